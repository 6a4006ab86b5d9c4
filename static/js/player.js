// Loading a playlist item into the <video>: files (MP4, WebM...) natively, HLS through hls.js
// (static/vendor/hls, Media Source Extensions) or the browser's own HLS where there is no MSE.
// Live streams are HLS without a shared position: the follower keeps them at the live edge.

const HLS_URL = /\.m3u8(?:$|[?#])/i;

export function movieKind(movie) {
  if (!movie) return null;
  if (movie.type === "live") return "live";
  if (movie.type === "hls" || HLS_URL.test(movie.url || "")) return "hls";
  return "file";
}

export class Player {
  // onNetworkError(): a fatal hls.js network error; answering true means the caller recovers
  // (live.js renews the signed URL, then calls resume()).
  constructor(video, { onError = () => {}, onLoaded = () => {}, onNetworkError = () => false } = {}) {
    this.video = video;
    this.onError = onError;
    this.onLoaded = onLoaded;
    this.onNetworkError = onNetworkError;
    this.rewrite = null;
    this.movie = null;
    this.hls = null;
    this.recoveries = 0;
    video.addEventListener("error", () => {
      if (!this.movie || this.hls) return; // hls.js reports its own errors
      const code = video.error ? video.error.code : 0;
      const why = { 1: "loading was aborted", 2: "a network error", 3: "it cannot be decoded", 4: "the format is not supported" }[code];
      this.onError(`This video cannot be played: ${why || "unknown error"}.`);
    });
    video.addEventListener("loadedmetadata", () => this.onLoaded(this.movie));
  }

  get movieId() { return this.movie ? this.movie.id : null; }
  get kind() { return movieKind(this.movie); }

  // `rewrite(url)`: the URL hls.js should fetch instead (a live stream's renewed signature).
  load(movie, { rewrite = null } = {}) {
    this.unload();
    this.movie = movie;
    this.rewrite = rewrite;
    this.recoveries = 0;
    const v = this.video;
    const kind = movieKind(movie);
    if (kind === "hls" || kind === "live") {
      const Hls = window.Hls;
      if (Hls && Hls.isSupported()) {
        const headers = movie.headers && typeof movie.headers === "object" ? movie.headers : null;
        const hls = new Hls({
          lowLatencyMode: kind === "live",
          backBufferLength: 60,
          xhrSetup: headers || rewrite ? (xhr, url) => {
            const target = rewrite ? rewrite(url) : url;
            if (target !== url) xhr.open("GET", target, true);
            for (const [name, value] of Object.entries(headers || {})) {
              try { xhr.setRequestHeader(name, value); } catch { /* forbidden header: skip */ }
            }
          } : undefined,
        });
        hls.on(Hls.Events.ERROR, (_event, data) => {
          if (!data.fatal) return;
          if (data.type === Hls.ErrorTypes.NETWORK_ERROR && this.onNetworkError(this.movie, data)) return;
          if (this.recoveries < 3 && data.type === Hls.ErrorTypes.NETWORK_ERROR) {
            this.recoveries += 1;
            setTimeout(() => hls.startLoad(), 1000 * this.recoveries);
          } else if (this.recoveries < 3 && data.type === Hls.ErrorTypes.MEDIA_ERROR) {
            this.recoveries += 1;
            hls.recoverMediaError();
          } else {
            this.onError(`This stream cannot be played (${data.details || data.type}).`);
          }
        });
        hls.loadSource(movie.url);
        hls.attachMedia(v);
        this.hls = hls;
      } else if (v.canPlayType("application/vnd.apple.mpegurl")) {
        v.src = movie.url;
      } else {
        this.onError("This browser cannot play HLS streams.");
        return;
      }
    } else {
      v.src = movie.url;
    }
    for (const sub of Array.isArray(movie.subtitles) ? movie.subtitles : []) {
      if (!sub || typeof sub.url !== "string") continue;
      const track = document.createElement("track");
      track.kind = "subtitles";
      track.src = sub.url;
      track.label = sub.name || sub.lang || "Subtitles";
      if (sub.lang) track.srclang = sub.lang;
      v.append(track);
    }
    if (!this.hls) v.load();
  }

  // Loading again after a fatal network error the caller handled (onNetworkError).
  resume() {
    if (this.hls) this.hls.startLoad(-1);
  }

  unload() {
    const v = this.video;
    if (this.hls) { this.hls.destroy(); this.hls = null; }
    v.querySelectorAll("track").forEach((t) => t.remove());
    if (this.movie || v.getAttribute("src")) {
      v.pause();
      v.removeAttribute("src");
      v.load();
    }
    this.movie = null;
  }
}
