// The room WebSocket (docs/api.md, "WebSocket") with reconnection.
//
// Reconnect: exponential backoff from 0.5 s to 15 s with jitter (each delay drawn from its upper
// half), so a room full of pages does not come back in lock-step; after `server_shutdown`, the
// delay the server asked for plus up to 1 s of jitter. A socket that hears nothing (not even a
// pong) for 15 s is treated as dead. Refusals are final for this page: 4403 (not a member,
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
    this.ws = null;
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
    let ws;
    try {
      // synctv.v2: who is online comes in pages and batched changes (room.js, store.js).
      ws = new WebSocket(this.url, ["synctv.v2", "synctv.v1", `bearer.${token}`]);
    } catch {
      this.schedule();
      return;
    }
    this.ws = ws;
    this.lastHeard = performance.now();
    ws.addEventListener("message", (event) => {
      this.lastHeard = performance.now();
      let msg;
      try { msg = JSON.parse(event.data); } catch { return; }
      if (!msg || typeof msg.type !== "string") return;
      if (msg.type === "hello") { this.attempt = 0; this.setState("connected"); }
      if (msg.type === "server_shutdown") {
        // Come back at a random moment of the window the server gives (sized from how many
        // sockets it had), so the nodes taking them over are not hit all at once.
        const window = Number(msg.reconnect_window_ms);
        this.shutdownDelay = (Number(msg.reconnect_after_ms) || 2000)
          + Math.random() * (Number.isFinite(window) && window > 0 ? window : 1000);
      }
      this.onMessage(msg);
    });
    ws.addEventListener("close", (event) => this.closed(ws, event.code));
  }

  async closed(ws, code) {
    if (ws !== this.ws) return;
    this.ws = null;
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

  reconnectNow() {
    clearTimeout(this.timer);
    if (this.ws) { const ws = this.ws; this.ws = null; ws.close(); }
    this.attempt = Math.max(this.attempt, 1);
    this.connect();
  }

  checkSilence() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN && performance.now() - this.lastHeard > SILENCE_MS) {
      const ws = this.ws;
      this.ws = null;
      ws.close();
      this.schedule();
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
    if (this.ws) { const ws = this.ws; this.ws = null; ws.close(); }
    this.setState(state);
  }
}
