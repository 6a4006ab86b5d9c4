// A live stream in the room's playlist (docs/streaming.md): a movie of type `live` whose `url` is
// only a marker ({PUBLIC_URL}/streams/<stream id>/). What to play comes from the stream's status
// (GET rooms/{room}/streams/{id}): a signed HLS URL valid a few minutes. While the streamer is not
// live the page says so over the player and asks again every few seconds; once live it plays the
// signed URL through Player (hls.js) and renews it before it expires, and after a fatal network
// error (a 403 once a signature has expired, the stream gone). A renewal does not reload the
// player: hls.js keeps going and its next requests carry the new signature (Player's `rewrite`).
import { api } from "../api.js";
import { $ } from "../common.js";
import { roomId } from "./store.js";

const POLL_MS = 3000;            // while waiting for the streamer
const RENEW_MS = 5 * 60 * 1000;  // a fresh signed URL at least this often (HLS_URL_TTL ≤ 10 min)
const RETRY_MS = 2000;           // after a failed status read or a playlist not there yet
const STREAM_URL = /\/streams\/([A-Za-z0-9_-]{1,64})\/?$/;
const SIGNED = /\/hls\/[^/]+\/(\d{1,12})\/[^/]+\/[^/]*$/;

export function streamIdOf(movie) {
  const match = STREAM_URL.exec((movie && movie.url) || "");
  return match ? match[1] : null;
}

const baseOf = (url) => url.slice(0, url.lastIndexOf("/") + 1);

export class LiveSource {
  // player: a Player; onError(message): a message over the player (the stream cannot be read).
  constructor(player, { onError = () => {} } = {}) {
    this.player = player;
    this.onError = onError;
    this.movie = null;
    this.gen = 0;
    this.timer = 0;
    this.base = null;          // the current signed URL's folder: /hls/<sig>/<expires>/<id>/
    this.bases = new Set();    // every folder issued for this movie, rewritten to `base`
    this.busy = false;
    this.pending = null;       // a check asked for while one was in flight: its reason
    this.waitingEl = document.createElement("div");
    this.waitingEl.className = "player-overlay live-waiting";
    this.waitingEl.dataset.testid = "live-waiting";
    this.waitingEl.setAttribute("role", "status");
    this.waitingEl.textContent = "Waiting for the streamer…";
    this.waitingEl.hidden = true;
    $("[data-player-box]").append(this.waitingEl);
  }

  get movieId() { return this.movie ? this.movie.id : null; }

  start(movie) {
    this.stop();
    this.movie = movie;
    this.check();
  }

  stop() {
    this.gen += 1;
    clearTimeout(this.timer);
    this.movie = null;
    this.base = null;
    this.bases.clear();
    this.busy = false;
    this.pending = null;
    this.setWaiting(false);
  }

  setWaiting(waiting) { this.waitingEl.hidden = !waiting; }

  // The room said this stream's publisher changed (went live, stopped, moved to another node):
  // read the stream again and load what it says. nginx goes on serving the last playlist of a
  // stream that stopped, so reloading the same URL would only replay a stale playlist.
  publisherChanged(streamId) {
    if (this.movie && streamIdOf(this.movie) === streamId) this.check("reload");
  }

  schedule(ms, reason) {
    clearTimeout(this.timer);
    const gen = this.gen;
    this.timer = setTimeout(() => { if (gen === this.gen) this.check(reason); }, ms);
  }

  // Read the stream's status and act on it. reason: "renew" (the URL is about to expire),
  // "error" (hls.js gave up on a request), "reload" (the playlist was not there yet), or none.
  async check(reason) {
    const movie = this.movie;
    const id = streamIdOf(movie);
    if (!movie) return;
    if (!id) { this.onError("This live stream cannot be played: it names no stream."); return; }
    if (this.busy) {
      // One read at a time; the latest reason asked for meanwhile runs right after it.
      this.pending = reason || this.pending || "again";
      return;
    }
    this.busy = true;
    this.pending = null;
    const gen = this.gen;
    let status;
    try {
      status = await api("GET", `rooms/${roomId}/streams/${id}`, { roomId });
    } catch (err) {
      if (gen !== this.gen) return;
      this.busy = false;
      if (err.status === 404 || err.status === 403) {
        this.player.unload();
        this.onError("This live stream is gone.");
        return;
      }
      const next = this.pending && this.pending !== "again" ? this.pending : reason;
      this.pending = null;
      this.schedule(RETRY_MS, next);
      return;
    }
    if (gen !== this.gen) return;
    this.busy = false;
    if (this.pending) {
      const again = this.pending === "again" ? undefined : this.pending;
      this.pending = null;
      this.schedule(0, again);
      return;
    }
    if (!status.live || !status.playback_url) {
      if (this.player.movie) this.player.unload();
      this.base = null;
      this.setWaiting(true);
      this.schedule(POLL_MS);
      return;
    }
    this.setWaiting(false);
    const url = status.playback_url;
    const base = baseOf(url);
    this.base = base;
    this.bases.add(base);
    const loaded = this.player.movie && this.player.movieId === movie.id && this.player.hls;
    if (!loaded || reason === "reload") {
      this.player.load({ ...movie, type: "live", url }, { rewrite: (u) => this.rewrite(u) });
    } else if (reason === "error") {
      this.player.resume(); // the same hls.js, asking again with the new signature
    }
    this.schedule(this.renewIn(url), "renew");
  }

  rewrite(url) {
    if (!this.base) return url;
    const base = baseOf(url);
    return base !== this.base && this.bases.has(base) ? this.base + url.slice(base.length) : url;
  }

  // Half the signature's remaining life, at most RENEW_MS, at least 10 s.
  renewIn(url) {
    const match = SIGNED.exec(url);
    if (!match) return RENEW_MS;
    const left = Number(match[1]) * 1000 - Date.now();
    return Math.max(10000, Math.min(RENEW_MS, left / 2));
  }

  // Player's onNetworkError: handled here for the live movie. A manifest never read (the
  // stream just went live and its first segment is not written yet) loads again from scratch.
  networkError(data) {
    if (!this.movie) return false;
    const early = /^manifest/i.test((data && data.details) || "");
    this.schedule(early ? RETRY_MS : 0, early ? "reload" : "error");
    return true;
  }
}
