// The room WebSocket (docs/api.md, "WebSocket") with reconnection.
//
// Reconnect: exponential backoff from 0.5 s to 15 s with jitter (each delay drawn from its upper
// half), so a room full of pages does not come back in lock-step; after `server_shutdown`, the
// delay the server asked for plus a random part of its window; when the server drains (its
// notice has `drain_ms`), the new socket is opened beside the old one, which still delivers, and
// the old one is closed once the new one's hello came: no gap. A socket that hears nothing (not
// even a pong) for 15 s is treated as dead. Refusals are final for this page: 4403 (not a member,
// banned, kicked) and 4404 (no such room); 4401 (token) asks the page to refresh its token first.

const MAX_DELAY = 15000;
const BASE_DELAY = 500;
const SILENCE_MS = 15000;

export function socketUrl(roomId, base = document.body.dataset.wsUrl) {
  const origin = new URL(base || location.origin, location.href);
  origin.protocol = origin.protocol === "https:" || origin.protocol === "wss:" ? "wss:" : "ws:";
  const prefix = origin.pathname.replace(/\/+$/, "");
  return `${origin.protocol}//${origin.host}${prefix}/ws/rooms/${encodeURIComponent(roomId)}/`;
}

export class RoomSocket {
  // token(): the bearer token now; onAuthFailed(): Promise<boolean> (true: try again).
  constructor({ url, token, onMessage, onState, onAuthFailed = async () => false, onRefused = () => {} }) {
    Object.assign(this, { url, token, onMessage, onState, onAuthFailed, onRefused });
    this.ws = null; // the socket whose messages reach the page
    this.next = null; // its replacement while the server drains (make before break)
    this.nextStarted = 0;
    this.handoverTimer = 0;
    this.handoverTries = 0;
    this.attempt = 0;
    this.timer = 0;
    this.stopped = false;
    this.shutdownDelay = null;
    this.lastHeard = 0;
    this.watchdog = setInterval(() => this.checkSilence(), 2000);
    window.addEventListener("online", () => { if (!this.ws && !this.stopped) this.reconnectNow(); });
    window.addEventListener("offline", () => this.setState("offline"));
  }

  setState(state) { this.state = state; this.onState(state); }

  connect() {
    if (this.stopped) return;
    clearTimeout(this.timer);
    const token = this.token();
    if (!token) { this.stop("signed-out"); return; }
    this.setState(this.attempt ? "reconnecting" : "connecting");
    const ws = this.dial(token);
    if (!ws) { this.schedule(); return; }
    this.ws = ws;
    this.lastHeard = performance.now();
  }

  dial(token) {
    let ws;
    try {
      // synctv.v2: who is online comes in pages and batched changes (room.js, store.js).
      ws = new WebSocket(this.url, ["synctv.v2", "synctv.v1", `bearer.${token}`]);
    } catch {
      return null;
    }
    ws.addEventListener("message", (event) => this.received(ws, event.data));
    ws.addEventListener("close", (event) => this.closed(ws, event.code));
    return ws;
  }

  received(ws, data) {
    let msg;
    try { msg = JSON.parse(data); } catch { return; }
    if (!msg || typeof msg.type !== "string") return;
    if (ws === this.next) {
      if (msg.type !== "hello") return; // a refusal's error frame: its close code says the rest
      this.promote(ws);
    } else if (ws !== this.ws) {
      return; // the socket we moved away from, in its last moments
    }
    this.lastHeard = performance.now();
    if (msg.type === "hello") { this.attempt = 0; this.setState("connected"); }
    if (msg.type === "server_shutdown") this.serverStopping(msg);
    this.onMessage(msg);
  }

  serverStopping(msg) {
    // Come back at a random moment of the window the server gives (sized from how many
    // sockets it had), so the nodes taking them over are not hit all at once. With `drain_ms`
    // this socket stays open and delivering meanwhile: the new one is opened beside it at that
    // moment, and this one closed once the new one's hello came (docs/realtime.md, "Shutdown").
    const window = Number(msg.reconnect_window_ms);
    this.shutdownDelay = (Number(msg.reconnect_after_ms) || 2000)
      + Math.random() * (Number.isFinite(window) && window > 0 ? window : 1000);
    if (Number(msg.drain_ms) > 0) {
      this.handoverTries = 0;
      clearTimeout(this.handoverTimer);
      this.handoverTimer = setTimeout(() => this.openReplacement(), this.shutdownDelay);
    }
  }

  openReplacement() {
    if (this.stopped || !this.ws || this.next) return;
    const token = this.token();
    if (!token) return;
    this.next = this.dial(token);
    this.nextStarted = performance.now();
    if (!this.next) this.retryHandover();
  }

  promote(ws) {
    const old = this.ws;
    this.ws = ws;
    this.next = null;
    this.shutdownDelay = null;
    clearTimeout(this.handoverTimer);
    if (old) old.close(1000);
  }

  retryHandover() {
    // The old socket still delivers: try again a little later (the old one's close, at the end
    // of the drain, falls back to a plain reconnect).
    this.handoverTries += 1;
    if (this.handoverTries > 5) return;
    const ceiling = BASE_DELAY * 2 ** this.handoverTries;
    this.handoverTimer = setTimeout(() => this.openReplacement(), ceiling / 2 + Math.random() * (ceiling / 2));
  }

  async closed(ws, code) {
    if (ws === this.next) {
      this.next = null;
      if (this.ws) {
        if (code === 4401) await this.onAuthFailed();
        this.retryHandover();
        return;
      }
      // The old socket is gone too: this close decides, as for any connect.
    } else if (ws !== this.ws) {
      return;
    } else {
      this.ws = null;
      if (this.next) return; // its replacement is on its way; its hello takes over
    }
    clearTimeout(this.handoverTimer);
    if (this.stopped) return;
    if (code === 4401) {
      this.setState("reconnecting");
      if (this.attempt < 2 && (await this.onAuthFailed())) { this.attempt += 1; this.connect(); return; }
      this.stop("signed-out");
      this.onRefused(code);
      return;
    }
    if (code === 4403 || code === 4404) {
      this.stop(code === 4404 ? "closed" : "refused");
      this.onRefused(code);
      return;
    }
    if (this.shutdownDelay !== null) {
      const delay = this.shutdownDelay;
      this.shutdownDelay = null;
      this.attempt = Math.max(this.attempt, 1);
      this.setState("reconnecting");
      this.timer = setTimeout(() => this.connect(), delay);
      return;
    }
    this.schedule();
  }

  schedule() {
    if (this.stopped) return;
    const ceiling = Math.min(MAX_DELAY, BASE_DELAY * 2 ** this.attempt);
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.attempt += 1;
    this.setState(navigator.onLine === false ? "offline" : "reconnecting");
    this.timer = setTimeout(() => this.connect(), delay);
  }

  dropReplacement() {
    clearTimeout(this.handoverTimer);
    if (this.next) { const next = this.next; this.next = null; next.close(); }
  }

  reconnectNow() {
    clearTimeout(this.timer);
    this.dropReplacement();
    if (this.ws) { const ws = this.ws; this.ws = null; ws.close(); }
    this.attempt = Math.max(this.attempt, 1);
    this.connect();
  }

  checkSilence() {
    const now = performance.now();
    if (this.next && now - this.nextStarted > SILENCE_MS) this.next.close(); // a stuck handshake
    if (this.ws && this.ws.readyState === WebSocket.OPEN && now - this.lastHeard > SILENCE_MS) {
      const ws = this.ws;
      this.ws = null;
      ws.close();
      if (!this.next) this.schedule();
    }
  }

  send(message) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  get open() { return Boolean(this.ws && this.ws.readyState === WebSocket.OPEN); }

  stop(state = "closed") {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.watchdog);
    this.dropReplacement();
    if (this.ws) { const ws = this.ws; this.ws = null; ws.close(); }
    this.setState(state);
  }
}
