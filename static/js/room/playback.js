// The player and its controls: loading what the room plays, keeping it in sync (sync.js's
// Follower), play/pause, seek, rate, volume, fullscreen, the keyboard, the next video when one
// ends, and "pause the room while a viewer buffers". Changes go out on the socket as `playback`
// frames; the state comes back through room.js (`applyPlayback`).
import { $, formatTime, h, toast } from "../common.js";
import { setIcon } from "../icons.js";
import { PERM } from "../perms.js";
import { movieKind, Player } from "../player.js";
import { BANDS, Clock, Follower } from "../sync.js";
import { LiveSource } from "./live.js";
import { can, currentMovie, myId, roomId, S } from "./store.js";

export const video = $("[data-testid=player]");
export const clock = new Clock();

const overlay = $("[data-player-overlay]");
const unmute = $("[data-unmute]");
function setOverlay(message) {
  overlay.textContent = message || "";
  overlay.hidden = !message;
}

export const player = new Player(video, {
  onError: (message) => setOverlay(message),
  onLoaded: (movie) => {
    setOverlay("");
    follower.setLive(movieKind(movie) === "live" || video.duration === Infinity);
  },
  onNetworkError: (movie, data) => movieKind(movie) === "live" && live.networkError(data),
});

// A `live` movie: its status decides what plays (live.js); the follower only plays and pauses.
const live = new LiveSource(player, { onError: (message) => setOverlay(message) });

// `publisher_changed` from the room (room.js).
export function publisherChanged(streamId) {
  live.publisherChanged(streamId);
}

export const follower = new Follower(video, clock, {
  onReady: (ready) => S.socket && S.socket.send({ type: "ready", ready }),
  onAutoplayBlocked: () => { unmute.hidden = false; },
  onStats: (stats) => renderSyncInfo(stats),
});

unmute.addEventListener("click", () => {
  video.muted = false;
  unmute.hidden = true;
  renderVolume();
});

// Load what the room plays (after a state change or a playlist refetch).
export function syncMovie() {
  const wanted = S.playback ? S.playback.movie_id : null;
  if (!wanted) {
    live.stop();
    if (player.movie) player.unload();
    setOverlay(S.movies.length ? "Nothing is playing. Pick a video from the playlist." : "Nothing is playing. Add a video to the playlist.");
    return;
  }
  const movie = currentMovie();
  if (!movie) return; // the playlist is on its way
  if (movieKind(movie) === "live") {
    if (live.movieId !== movie.id || live.movie.url !== movie.url) {
      setOverlay("");
      player.unload();
      follower.setLive(true);
      live.start(movie);
    }
    return;
  }
  live.stop();
  if (player.movieId !== movie.id || player.movie.url !== movie.url || player.movie.type !== movie.type) {
    setOverlay("");
    player.load(movie);
    follower.setLive(movieKind(movie) === "live");
  }
}

export function sendPlayback(change, ref) {
  if (!S.socket || !S.socket.send({ type: "playback", ...change, ...(ref ? { ref } : {}) })) {
    toast("Not connected; try again in a moment.", { kind: "warn" });
  }
}

function localPosition() {
  return Number.isFinite(video.currentTime) ? video.currentTime : 0;
}

function togglePlay() {
  if (!can(PERM.PLAY_CONTROL)) return;
  const st = S.playback;
  if (!st || !st.movie_id) {
    if (!S.movies.length) { toast("Add a video to the playlist first."); return; }
    if (!can(PERM.CHANGE_CURRENT_MOVIE)) { toast("You may not pick the video."); return; }
    sendPlayback({ movie_id: S.movies[0].id, playing: true });
    return;
  }
  if (st.playing) sendPlayback({ playing: false, position: localPosition() });
  else sendPlayback({ playing: true });
}

// The player's controls mounted per permission (perms.js applyParts; room.js merges the parts).
export const playbackParts = {
  "play-toggle": (btn) => { btn.addEventListener("click", togglePlay); renderControls(); },
  seek: (range) => {
    range.addEventListener("pointerdown", () => { S.seekDragging = true; });
    range.addEventListener("input", () => { S.seekDragging = true; renderTime(Number(range.value)); });
    range.addEventListener("change", () => {
      S.seekDragging = false;
      sendPlayback({ position: Number(range.value) });
    });
    range.addEventListener("pointerup", () => setTimeout(() => { S.seekDragging = false; }, 50));
    range.addEventListener("blur", () => { S.seekDragging = false; });
  },
  rate: (label) => {
    const select = $("select", label);
    select.addEventListener("change", () => sendPlayback({ rate: Number(select.value) }));
    renderControls();
  },
  "wait-buffering": (label) => {
    const box = $("input", label);
    const key = `synctv.wait.${roomId}`;
    box.checked = localStorage.getItem(key) === "1";
    box.addEventListener("change", () => localStorage.setItem(key, box.checked ? "1" : "0"));
  },
};

// --- rendering -----------------------------------------------------------------------------------

export function renderControls() {
  const st = S.playback;
  const btn = $("[data-testid=play-toggle]");
  if (btn) {
    const playing = Boolean(st && st.playing);
    setIcon(btn, playing ? "pause" : "play");
    btn.setAttribute("aria-label", playing ? "Pause" : "Play");
    btn.dataset.playing = String(playing);
  }
  const select = $("[data-rate]");
  if (select && st && document.activeElement !== select) {
    const value = String(st.rate);
    if (![...select.options].some((o) => o.value === value)) select.append(h("option", { value }, `${value}×`));
    select.value = value;
  }
  renderTime();
}

function renderTime(preview) {
  const duration = Number.isFinite(video.duration) ? video.duration : 0;
  const position = preview ?? localPosition();
  const live = player.kind === "live" || video.duration === Infinity;
  $("[data-time]").textContent = live ? "● LIVE" : `${formatTime(position)} / ${formatTime(duration)}`;
  const range = $("[data-testid=seek]");
  if (range) {
    range.max = String(duration || 0);
    range.hidden = live;
    if (!S.seekDragging) range.value = String(position);
    range.setAttribute("aria-valuetext", `${formatTime(position)} of ${formatTime(duration)}`);
  }
  const progress = $("[data-progress]");
  if (progress) {
    progress.max = duration || 1;
    progress.value = Math.min(position, duration || 0);
    progress.hidden = live;
  }
}

let lastSyncRender = 0;
// The viewer's own diagnostics: how far their player is from the room (± what the clock may be
// off by), the correction under way, the best round trip to the server.
function renderSyncInfo({ drift, rate, rtt, clockError }) {
  const el = $("[data-sync-info]");
  const now = performance.now();
  if (drift !== null && Number.isFinite(drift)) el.dataset.driftMs = (drift * 1000).toFixed(1);
  if (Number.isFinite(clockError)) el.dataset.clockErrorMs = clockError.toFixed(1);
  if (now - lastSyncRender < 500) return;
  lastSyncRender = now;
  const parts = [];
  const within = Number.isFinite(clockError) ? ` ± ${Math.max(1, Math.round(clockError))}` : "";
  if (drift !== null && Number.isFinite(drift)) {
    const ms = Math.round(drift * 1000);
    const still = Math.max(BANDS.ignore, (clockError || 0) / 1000);
    parts.push(Math.abs(drift) < still ? `in sync (${ms >= 0 ? "+" : ""}${ms}${within} ms)` : `${ms > 0 ? "ahead" : "behind"} ${Math.abs(ms)}${within} ms`);
    if (Math.abs(rate - (S.playback ? S.playback.rate : 1)) > 0.001) parts.push(`catching up at ${rate.toFixed(2)}×`);
  }
  if (rtt !== null) parts.push(`ping ${Math.round(rtt)} ms`);
  el.textContent = parts.join(" · ");
}

function renderVolume() {
  const muted = video.muted || video.volume === 0;
  const btn = $("[data-mute]");
  setIcon(btn, muted ? "muted" : "volume");
  btn.setAttribute("aria-label", muted ? "Unmute" : "Mute");
  $("[data-volume]").value = String(video.muted ? 0 : video.volume);
}

$("[data-mute]").addEventListener("click", () => {
  video.muted = !video.muted;
  if (!video.muted && video.volume === 0) video.volume = 0.5;
  unmute.hidden = true;
  renderVolume();
});
$("[data-volume]").addEventListener("input", (event) => {
  video.volume = Number(event.target.value);
  video.muted = video.volume === 0;
  unmute.hidden = true;
  renderVolume();
});
$("[data-fullscreen]").addEventListener("click", () => {
  const box = $("[data-player-box]");
  if (document.fullscreenElement) document.exitFullscreen();
  else if (box.requestFullscreen) box.requestFullscreen().catch(() => {});
});
video.addEventListener("volumechange", renderVolume);
setInterval(() => renderTime(S.seekDragging ? Number(($("[data-testid=seek]") || {}).value) : undefined), 250);

// Keyboard on the player: space / k play-pause, arrows seek 5 s (for those who may).
$("[data-player-box]").tabIndex = 0;
$("[data-player-box]").addEventListener("keydown", (event) => {
  if (!can(PERM.PLAY_CONTROL) || event.target !== event.currentTarget) return;
  if (event.key === " " || event.key === "k") { event.preventDefault(); togglePlay(); }
  if ((event.key === "ArrowLeft" || event.key === "ArrowRight") && movieKind(currentMovie()) !== "live") {
    event.preventDefault();
    sendPlayback({ position: Math.max(0, localPosition() + (event.key === "ArrowLeft" ? -5 : 5)) });
  }
});

// When the playing video ends, whoever may pick videos moves the room to the next one. Everyone
// sends the same versioned change: exactly one wins, the others get a conflict and stay quiet.
video.addEventListener("ended", () => {
  const st = S.playback;
  if (!st || !st.playing || player.kind === "live" || !can(PERM.PLAY_CONTROL, PERM.CHANGE_CURRENT_MOVIE)) return;
  const index = S.movies.findIndex((m) => m.id === st.movie_id);
  const next = index >= 0 ? S.movies[index + 1] : null;
  if (next) sendPlayback({ movie_id: next.id, playing: true, version: st.version }, "auto-next");
});

// --- wait for a buffering viewer -----------------------------------------------------------------

// Optional: a controller may have the room wait (paused) while a viewer buffers, at most 10 s.
export function waitForBuffering(userId, ready) {
  const box = $("[data-wait-buffering]");
  if (!box || !box.checked || !can(PERM.PLAY_CONTROL) || userId === myId()) return;
  const st = S.playback;
  if (!ready && st && st.playing && S.autoPausedVersion === null && S.waitFor.size === 0) {
    S.waitFor.add(userId);
    S.autoPausedVersion = st.version + 1; // our pause will be the next version
    sendPlayback({ playing: false, version: st.version }, "auto-wait");
    clearTimeout(S.waitTimer);
    S.waitTimer = setTimeout(() => resumeAfterWait(), 10000);
    toast("Waiting for a viewer to buffer…");
  } else if (!ready && S.autoPausedVersion !== null) {
    S.waitFor.add(userId);
  } else if (ready) {
    maybeResume(userId);
  }
}

export function maybeResume(userId) {
  if (S.waitFor.delete(userId) && S.waitFor.size === 0 && S.autoPausedVersion !== null) resumeAfterWait();
}

function resumeAfterWait() {
  clearTimeout(S.waitTimer);
  const version = S.autoPausedVersion;
  S.autoPausedVersion = null;
  S.waitFor.clear();
  const st = S.playback;
  // Only if nobody touched the room since our pause.
  if (st && !st.playing && st.version === version) sendPlayback({ playing: true, version }, "auto-wait");
}

setIcon($("[data-fullscreen]"), "fullscreen");
renderVolume();
