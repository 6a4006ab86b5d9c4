// The room page (/rooms/{id}/): join, player in sync, playlist, chat, members, settings.
// Everything comes from the REST API and the room WebSocket; the page shows only the controls the
// member's effective permissions allow (perms.js mounts and unmounts them).
import { api, ApiError, refreshTokens, signedIn, socketToken, tokens } from "./api.js";
import { $, $$, formatTime, h, initAccountNav, showError, toast, unescapeHtml } from "./common.js";
import { applyParts, GUEST_CAP, has, LABELS, PERM, RANK } from "./perms.js";
import { setIcon } from "./icons.js";
import { movieKind, Player } from "./player.js";
import { RoomSocket, socketUrl } from "./socket.js";
import { BANDS, Clock, Follower, localNow } from "./sync.js";

const roomId = document.body.dataset.roomId;
const invite = new URLSearchParams(location.search).get("invite");
const video = $("[data-testid=player]");
const connState = $("[data-testid=connection-state]");
const notice = $("[data-room-notice]");
const REACTIONS = ["👍", "😂", "😮", "😢", "❤️", "🎉", "👏", "🔥"];
const PICKER = ["😀", "😂", "😍", "🤔", "😮", "😢", "😡", "👍", "👎", "👏", "🙏", "🎉", "🔥", "❤️", "💯", "🍿", "🎬", "👀", "😴", "🤣", "😎", "🥳", "😱", "✨"];

const S = {
  room: null,
  me: null,          // our member row: {user, role, effective_permissions, ...}
  perms: 0,
  movies: [],
  playback: null,
  online: new Map(), // user id -> {user_id, username, role, ready}
  members: null,     // full active member list (VIEW_MEMBER_LIST) or null
  chatSeen: new Set(),
  socket: null,
  entered: false,
  seekDragging: false,
  waitFor: new Set(),        // viewers we paused the room for
  autoPausedVersion: null,
  waitTimer: 0,
};

const clock = new Clock();
const can = (...bits) => has(S.perms, ...bits);
const myId = () => (S.me && S.me.user ? S.me.user.id : null);
const rank = (role) => RANK[role] ?? -1;

initAccountNav();

function setConn(state) {
  connState.textContent = state;
  connState.dataset.state = state;
}

function showNotice(message) {
  notice.textContent = message || "";
  notice.hidden = !message;
}

// --- player and sync ------------------------------------------------------------------------------

const overlay = $("[data-player-overlay]");
const unmute = $("[data-unmute]");
function setOverlay(message) {
  overlay.textContent = message || "";
  overlay.hidden = !message;
}

const player = new Player(video, {
  onError: (message) => setOverlay(message),
  onLoaded: (movie) => {
    setOverlay("");
    follower.setLive(movieKind(movie) === "live" || video.duration === Infinity);
  },
});

const follower = new Follower(video, clock, {
  onReady: (ready) => S.socket && S.socket.send({ type: "ready", ready }),
  onAutoplayBlocked: () => { unmute.hidden = false; },
  onStats: (stats) => renderSyncInfo(stats),
});

unmute.addEventListener("click", () => {
  video.muted = false;
  unmute.hidden = true;
  renderVolume();
});

function currentMovie() {
  const id = S.playback ? S.playback.movie_id : null;
  return id ? S.movies.find((m) => m.id === id) || null : null;
}

// Load what the room plays (after a state change or a playlist refetch).
function syncMovie() {
  const wanted = S.playback ? S.playback.movie_id : null;
  if (!wanted) {
    if (player.movie) player.unload();
    setOverlay(S.movies.length ? "Nothing is playing. Pick a video from the playlist." : "Nothing is playing. Add a video to the playlist.");
    return;
  }
  const movie = currentMovie();
  if (!movie) return; // the playlist is on its way
  if (player.movieId !== movie.id || player.movie.url !== movie.url || player.movie.type !== movie.type) {
    setOverlay("");
    player.load(movie);
    follower.setLive(movieKind(movie) === "live");
  }
}

function applyPlayback(state) {
  if (S.playback && state.version < S.playback.version) return;
  S.playback = {
    movie_id: state.movie_id, playing: state.playing, position: state.position, rate: state.rate,
    updated_at: state.updated_at, version: state.version, server_time: state.server_time,
  };
  syncMovie();
  follower.setState(S.playback);
  renderPlaylist();
  renderControls();
}

function sendPlayback(change, ref) {
  if (!S.socket || !S.socket.send({ type: "playback", ...change, ...(ref ? { ref } : {}) })) {
    toast("Not connected; try again in a moment.", { kind: "warn" });
  }
}

function localPosition() {
  return Number.isFinite(video.currentTime) ? video.currentTime : 0;
}

// --- controls (mounted per permission) -----------------------------------------------------------

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

const setup = {
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
  "emoji-bar": (bar) => {
    for (const emoji of REACTIONS) {
      bar.append(h("button", {
        type: "button", class: "icon emoji", "aria-label": `React ${emoji}`,
        onclick: () => S.socket && S.socket.send({ type: "emoji", emoji }),
      }, emoji));
    }
  },
  "add-movie": (form) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const url = $("[data-testid=add-movie-url]", form).value.trim();
      let name = $("[data-testid=add-movie-name]", form).value.trim();
      let type = $("[data-add-movie-type]", form).value;
      if (!url) return;
      if (!name) {
        try { name = decodeURIComponent(new URL(url).pathname.split("/").filter(Boolean).pop() || "") || url; } catch { name = url; }
        name = name.slice(0, 200);
      }
      if (!type) type = movieKind({ url }) === "hls" ? "hls" : "file";
      const button = $("[data-testid=add-movie-submit]", form);
      button.disabled = true;
      try {
        const movie = await api("POST", `rooms/${roomId}/movies`, { body: { url, name, type }, roomId });
        if (!S.movies.some((m) => m.id === movie.id)) S.movies.push(movie);
        renderPlaylist();
        form.reset();
      } catch (err) {
        toast(err instanceof ApiError ? err.describe() : err.message, { kind: "error" });
      } finally {
        button.disabled = false;
      }
    });
  },
  "chat-form": (form) => {
    const input = $("[data-testid=chat-input]", form);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      if (S.socket && S.socket.send({ type: "chat", text })) input.value = "";
      else toast("Not connected; your message was not sent.", { kind: "warn" });
    });
    const picker = $("[data-emoji-picker]", form);
    const toggle = $("[data-emoji-picker-toggle]", form);
    for (const emoji of PICKER) {
      picker.append(h("button", {
        type: "button", class: "icon emoji", "aria-label": `Insert ${emoji}`,
        onclick: () => {
          const at = input.selectionStart ?? input.value.length;
          input.value = input.value.slice(0, at) + emoji + input.value.slice(input.selectionEnd ?? at);
          input.focus();
          input.setSelectionRange(at + emoji.length, at + emoji.length);
        },
      }, emoji));
    }
    toggle.addEventListener("click", () => {
      picker.hidden = !picker.hidden;
      toggle.setAttribute("aria-expanded", String(!picker.hidden));
    });
  },
  members: () => { loadMembers(); },
  pending: (box) => { box.addEventListener("toggle", () => box.open && loadModerationList("pending")); },
  banned: (box) => { box.addEventListener("toggle", () => box.open && loadModerationList("banned")); },
  invite: (section) => {
    $("[data-invite-create]", section).addEventListener("click", async () => {
      try {
        const result = await api("POST", `rooms/${roomId}/invites`, { body: {}, roomId });
        const url = `${location.origin}/rooms/${encodeURIComponent(roomId)}/?invite=${encodeURIComponent(result.code)}`;
        $("[data-invite-url]", section).value = url;
        $("[data-invite-result]", section).hidden = false;
      } catch (err) {
        toast(err.message, { kind: "error" });
      }
    });
    $("[data-invite-copy]", section).addEventListener("click", async () => {
      const input = $("[data-invite-url]", section);
      try { await navigator.clipboard.writeText(input.value); toast("Invite link copied."); } catch { input.select(); }
    });
  },
  settings: (section) => {
    $("[data-settings-form]", section).addEventListener("submit", saveSettings);
    fillSettings(true);
  },
  "settings-info": () => fillSettings(true),
  "settings-room": () => fillSettings(true),
  "settings-admins": () => fillSettings(true),
  audit: (section) => {
    const box = $("[data-audit-box]", section);
    box.addEventListener("toggle", () => box.open && loadAudit());
  },
};

function setPerms(mask, role) {
  S.perms = Number(mask) || 0;
  if (role && S.me) S.me.role = role;
  applyParts($("[data-room-main]"), S.perms, setup);
  renderPlaylist();
  renderMembers();
  renderControls();
  renderRoomActions();
  fillSettings(false);
}

// --- rendering -----------------------------------------------------------------------------------

function renderRoom() {
  const room = S.room;
  if (!room) return;
  const name = unescapeHtml(room.name);
  $("[data-room-name]").textContent = name;
  document.title = `${name} · SyncTV`;
  $("[data-room-description]").textContent = unescapeHtml(room.description);
}

function renderControls() {
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
function renderSyncInfo({ drift, rate, rtt }) {
  const el = $("[data-sync-info]");
  const now = performance.now();
  if (drift !== null && Number.isFinite(drift)) el.dataset.driftMs = (drift * 1000).toFixed(1);
  if (now - lastSyncRender < 500) return;
  lastSyncRender = now;
  const parts = [];
  if (drift !== null && Number.isFinite(drift)) {
    const ms = Math.round(drift * 1000);
    parts.push(Math.abs(drift) < BANDS.ignore ? `in sync (${ms >= 0 ? "+" : ""}${ms} ms)` : `${ms > 0 ? "ahead" : "behind"} ${Math.abs(ms)} ms`);
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
  if (event.key === "ArrowLeft" || event.key === "ArrowRight") {
    event.preventDefault();
    sendPlayback({ position: Math.max(0, localPosition() + (event.key === "ArrowLeft" ? -5 : 5)) });
  }
});

// --- playlist ------------------------------------------------------------------------------------

// While someone drags an item, changes to the list (theirs or another member's) wait for the
// drop: replacing the nodes under the pointer would end or misplace the drag.
let dragId = null;
let playlistStale = false;

function endDrag() {
  dragId = null;
  if (playlistStale) {
    playlistStale = false;
    renderPlaylist();
  }
}

function renderPlaylist() {
  const list = $("[data-testid=playlist]");
  if (!list) return;
  if (dragId) {
    playlistStale = true;
    return;
  }
  const current = S.playback ? S.playback.movie_id : null;
  const canPick = can(PERM.PLAY_CONTROL, PERM.CHANGE_CURRENT_MOVIE);
  const canReorder = can(PERM.REORDER_PLAYLIST);
  list.replaceChildren(...S.movies.map((movie, index) => {
    const mine = movie.added_by && movie.added_by.id === myId();
    const actions = h("span", { class: "actions" },
      canPick ? h("button", {
        type: "button", class: "secondary small", "data-testid": "play-this",
        "aria-label": `Play ${movie.name}`, onclick: () => sendPlayback({ movie_id: movie.id, playing: true }),
      }, "Play") : null,
      canReorder ? h("button", {
        type: "button", class: "icon small", "aria-label": `Move ${movie.name} up`, disabled: index === 0,
        onclick: () => moveMovie(movie.id, index - 1),
      }, "↑") : null,
      canReorder ? h("button", {
        type: "button", class: "icon small", "aria-label": `Move ${movie.name} down`, disabled: index === S.movies.length - 1,
        onclick: () => moveMovie(movie.id, index + 1),
      }, "↓") : null,
      can(PERM.DELETE_MOVIE) || mine ? h("button", {
        type: "button", class: "icon small danger", "data-remove": "", "aria-label": `Remove ${movie.name}`,
        onclick: () => removeMovie(movie),
      }, "✕") : null);
    const item = h("li", {
      class: `playlist-item${movie.id === current ? " current" : ""}`,
      "data-testid": "playlist-item", dataset: { movieId: movie.id },
      "aria-current": movie.id === current ? "true" : null,
      draggable: canReorder ? "true" : null,
    },
    h("span", { class: "movie" },
      h("span", { class: "movie-name" }, movie.id === current ? "▶ " : "", movie.name),
      h("span", { class: "badge" }, movieKind(movie) === "file" ? "file" : movie.type === "live" ? "live" : "HLS"),
      movie.added_by ? h("span", { class: "muted small" }, ` · ${movie.added_by.username}`) : null),
    actions);
    if (canReorder) {
      item.addEventListener("dragstart", (event) => {
        dragId = movie.id;
        event.dataTransfer.effectAllowed = "move";
        event.dataTransfer.setData("text/plain", movie.id);
        item.classList.add("dragging");
      });
      item.addEventListener("dragend", () => { item.classList.remove("dragging"); endDrag(); });
      item.addEventListener("dragover", (event) => { if (dragId) { event.preventDefault(); item.classList.add("drop-target"); } });
      item.addEventListener("dragleave", () => item.classList.remove("drop-target"));
      item.addEventListener("drop", (event) => {
        event.preventDefault();
        item.classList.remove("drop-target");
        const dragged = dragId;
        if (!dragged || dragged === movie.id) return;
        const rect = item.getBoundingClientRect();
        const after = event.clientY > rect.top + rect.height / 2;
        // Positions from the list as it is now: it may have changed during the drag.
        const from = S.movies.findIndex((m) => m.id === dragged);
        const target = S.movies.findIndex((m) => m.id === movie.id);
        endDrag();
        if (from < 0 || target < 0) return;
        let to = target + (after ? 1 : 0);
        if (from < to) to -= 1;
        moveMovie(dragged, to);
      });
    }
    return item;
  }));
  const empty = $("[data-playlist-empty]");
  if (empty) empty.hidden = S.movies.length > 0;
}

async function moveMovie(movieId, to) {
  const from = S.movies.findIndex((m) => m.id === movieId);
  if (from < 0 || to < 0 || to >= S.movies.length || from === to) return;
  const order = S.movies.slice();
  const [moved] = order.splice(from, 1);
  order.splice(to, 0, moved);
  S.movies = order;
  renderPlaylist();
  try {
    const result = await api("POST", `rooms/${roomId}/movies/reorder`, { body: { order: order.map((m) => m.id) }, roomId });
    S.movies = result.results;
    renderPlaylist();
  } catch (err) {
    toast(err.message, { kind: "error" });
    loadMovies();
  }
}

async function removeMovie(movie) {
  try {
    await api("DELETE", `rooms/${roomId}/movies/${encodeURIComponent(movie.id)}`, { roomId });
    S.movies = S.movies.filter((m) => m.id !== movie.id);
    renderPlaylist();
  } catch (err) {
    toast(err.message, { kind: "error" });
  }
}

let moviesLoading = null;
async function loadMovies() {
  if (moviesLoading) { moviesLoading.again = true; return; }
  moviesLoading = { again: false };
  try {
    const data = await api("GET", `rooms/${roomId}/movies`, { roomId });
    S.movies = data.results;
    renderPlaylist();
    syncMovie();
  } catch (err) {
    if (err.status !== 403) toast(`Could not load the playlist: ${err.message}`, { kind: "error" });
  } finally {
    const again = moviesLoading.again;
    moviesLoading = null;
    if (again) loadMovies();
  }
}

// When the playing video ends, whoever may pick videos moves the room to the next one. Everyone
// sends the same versioned change: exactly one wins, the others get a conflict and stay quiet.
video.addEventListener("ended", () => {
  const st = S.playback;
  if (!st || !st.playing || player.kind === "live" || !can(PERM.PLAY_CONTROL, PERM.CHANGE_CURRENT_MOVIE)) return;
  const index = S.movies.findIndex((m) => m.id === st.movie_id);
  const next = index >= 0 ? S.movies[index + 1] : null;
  if (next) sendPlayback({ movie_id: next.id, playing: true, version: st.version }, "auto-next");
});

// --- chat and reactions --------------------------------------------------------------------------

// A guest's name is whatever they typed: always shown marked, so "alice (guest)" cannot pass for
// the registered alice (user objects carry `guest`).
function guestBadge() {
  return h("span", { class: "badge role-guest", title: "Guest: a name they chose, not an account" }, "guest");
}

function addChat(msg) {
  if (msg.id !== undefined && S.chatSeen.has(msg.id)) return;
  if (msg.id !== undefined) S.chatSeen.add(msg.id);
  const log = $("[data-testid=chat-log]");
  const nearBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  const when = new Date(msg.server_time || Date.now());
  log.append(h("li", {
    class: `chat-message${msg.user && msg.user.id === myId() ? " mine" : ""}`,
    "data-testid": "chat-message", dataset: { userId: msg.user ? msg.user.id : "" },
  },
  h("span", { class: "author" }, msg.user ? msg.user.username : "?"),
  msg.user && msg.user.guest ? guestBadge() : null,
  h("span", { class: "text" }, unescapeHtml(msg.text)),
  h("time", { class: "muted small", datetime: when.toISOString() }, when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }))));
  while (log.children.length > 500) log.firstElementChild.remove();
  if (nearBottom || (msg.user && msg.user.id === myId())) log.scrollTop = log.scrollHeight;
}

function showReaction(msg) {
  const box = $("[data-reactions]");
  const item = h("span", { class: "reaction" }, unescapeHtml(msg.emoji));
  item.style.left = `${10 + Math.random() * 75}%`;
  item.title = msg.user ? `${msg.user.username}${msg.user.guest ? " (guest)" : ""}` : "";
  box.append(item);
  setTimeout(() => item.remove(), 2600);
}

// --- members -------------------------------------------------------------------------------------

async function fetchAll(path) {
  const out = [];
  let page = 1;
  for (;;) {
    const data = await api("GET", `${path}${path.includes("?") ? "&" : "?"}page=${page}`, { roomId });
    out.push(...data.results);
    if (!data.next || page >= 20) return out;
    page += 1;
  }
}

let membersTimer = 0;
function loadMembersSoon() {
  clearTimeout(membersTimer);
  membersTimer = setTimeout(loadMembers, 300);
}

async function loadMembers() {
  if (!can(PERM.VIEW_MEMBER_LIST)) { S.members = null; return; }
  try {
    S.members = await fetchAll(`rooms/${roomId}/members`);
  } catch (err) {
    if (err.status !== 403) toast(`Could not load members: ${err.message}`, { kind: "error" });
  }
  renderMembers();
}

function memberActions(member) {
  const meRank = S.me ? rank(S.me.role) : -1;
  const target = member.role;
  const id = member.user.id;
  if (!S.me || id === myId() || target === "creator") return null;
  const outranks = meRank > rank(target);
  const buttons = [];
  const name = member.user.username;
  if (can(PERM.MANAGE_ADMINS) && (target === "member" || target === "admin")) {
    const to = target === "admin" ? "member" : "admin";
    buttons.push(h("button", {
      type: "button", class: "secondary small", onclick: () => patchMember(id, { role: to }),
    }, to === "admin" ? "Make admin" : "Make member"));
  }
  if (can(PERM.KICK_MEMBERS) && outranks) {
    buttons.push(h("button", {
      type: "button", class: "secondary small", "aria-label": `Kick ${name}`,
      onclick: () => confirm(`Remove ${name} from the room?`) && memberAction(id, "kick"),
    }, "Kick"));
  }
  if (can(PERM.BAN_MEMBERS) && outranks) {
    buttons.push(h("button", {
      type: "button", class: "danger small", "aria-label": `Ban ${name}`,
      onclick: () => confirm(`Ban ${name}? They cannot come back until unbanned.`) && memberAction(id, "ban", {}),
    }, "Ban"));
  }
  // Per-member permissions: room admins (below whom the target ranks) and MANAGE_ADMINS holders;
  // only the bits the actor holds can be given or taken.
  const editable = (target === "member" && (outranks && meRank >= RANK.admin || can(PERM.MANAGE_ADMINS)))
    || (target === "admin" && can(PERM.MANAGE_ADMINS));
  let editor = null;
  if (editable && "effective_permissions" in member) {
    const base = target === "admin" ? S.room.settings.admin_permissions : S.room.settings.member_permissions;
    editor = h("details", { class: "perm-editor" }, h("summary", {}, "Permissions"),
      ...Object.entries(PERM).filter(([, bit]) => can(bit)).map(([key, bit]) => h("label", { class: "inline-check" },
        h("input", {
          type: "checkbox", checked: has(member.effective_permissions, bit), dataset: { bit: String(bit) },
          onchange: (event) => {
            let added = member.permissions_added, removed = member.permissions_removed;
            if (event.target.checked) { added |= bit; removed &= ~bit; } else { added &= ~bit; removed = base & bit ? removed | bit : removed & ~bit; }
            patchMember(id, { permissions_added: added, permissions_removed: removed });
          },
        }), ` ${LABELS[key]}`)));
  }
  if (!buttons.length && !editor) return null;
  return h("span", { class: "member-actions" }, ...buttons, editor);
}

function renderMembers() {
  const list = $("[data-testid=members]");
  if (!list) return;
  const byId = new Map();
  for (const member of S.members || []) byId.set(member.user.id, { ...member });
  for (const [id, info] of S.online) {
    if (!byId.has(id)) byId.set(id, { user: { id, username: info.username, guest: Boolean(info.guest) }, role: info.role });
  }
  const rows = [...byId.values()].sort((a, b) =>
    Number(S.online.has(b.user.id)) - Number(S.online.has(a.user.id))
    || rank(b.role) - rank(a.role) || a.user.username.localeCompare(b.user.username));
  list.replaceChildren(...rows.map((member) => {
    const info = S.online.get(member.user.id);
    const online = Boolean(info);
    return h("li", { class: `member${online ? " online" : ""}`, "data-testid": "member", dataset: { userId: member.user.id, role: member.role } },
      h("span", { class: "dot", "aria-hidden": "true" }),
      h("span", { class: "member-name" }, member.user.username, member.user.id === myId() ? " (you)" : ""),
      member.role === "guest" ? guestBadge()
        : h("span", { class: `badge role-${member.role}` }, member.role === "site_admin" ? "site admin" : member.role),
      member.user.guest && member.role !== "guest" ? guestBadge() : null,
      h("span", { class: "visually-hidden" }, online ? ", online" : ", offline"),
      info && info.ready === false ? h("span", { class: "badge warn" }, "buffering") : null,
      memberActions(member));
  }));
  const count = $("[data-online-count]");
  if (count) count.textContent = `(${S.online.size} online)`;
}

async function patchMember(userId, body) {
  try {
    const member = await api("PATCH", `rooms/${roomId}/members/${encodeURIComponent(userId)}`, { body, roomId });
    updateMember(member);
  } catch (err) {
    toast(err.message, { kind: "error" });
    renderMembers();
  }
}

async function memberAction(userId, action, body) {
  try {
    await api("POST", `rooms/${roomId}/members/${encodeURIComponent(userId)}/${action}`, { body, roomId });
    if (action === "kick" || action === "ban") S.online.delete(userId);
    loadMembers();
    if (action === "approve" || action === "unban") loadModerationList(action === "approve" ? "pending" : "banned");
  } catch (err) {
    toast(err.message, { kind: "error" });
  }
}

async function loadModerationList(status) {
  const list = $(status === "pending" ? "[data-pending-list]" : "[data-banned-list]");
  if (!list) return;
  try {
    const rows = await fetchAll(`rooms/${roomId}/members?status=${status}`);
    list.replaceChildren(...rows.map((m) => h("li", { class: "member" },
      h("span", { class: "member-name" }, m.user.username),
      h("button", {
        type: "button", class: "secondary small",
        onclick: () => memberAction(m.user.id, status === "pending" ? "approve" : "unban"),
      }, status === "pending" ? "Approve" : "Unban"))));
    if (!rows.length) list.replaceChildren(h("li", { class: "muted" }, "Nobody."));
    const count = $("[data-pending-count]");
    if (count && status === "pending") count.textContent = rows.length ? `(${rows.length})` : "";
  } catch (err) {
    list.replaceChildren(h("li", { class: "error" }, err.message));
  }
}

function updateMember(member) {
  if (!member || !member.user) return;
  if (member.user.id === myId()) {
    S.me = { ...S.me, ...member };
    setPerms(member.effective_permissions, member.role);
  }
  if (S.members) {
    const index = S.members.findIndex((m) => m.user.id === member.user.id);
    if (member.status && member.status !== "active") { if (index >= 0) S.members.splice(index, 1); } else if (index >= 0) S.members[index] = member;
    else S.members.push(member);
  }
  const info = S.online.get(member.user.id);
  if (info) info.role = member.role;
  renderMembers();
}

// --- settings, invite, audit, leave ---------------------------------------------------------------

function maskBoxes(fieldset, value, allowedBits) {
  fieldset.querySelectorAll("label").forEach((l) => l.remove());
  for (const [key, bit] of Object.entries(PERM)) {
    if (!(allowedBits & bit)) continue;
    fieldset.append(h("label", { class: "inline-check" },
      h("input", { type: "checkbox", checked: has(value, bit), dataset: { bit: String(bit) } }), ` ${LABELS[key]}`));
  }
}

function fillSettings(force) {
  const form = $("[data-settings-form]");
  if (!form || !S.room) return;
  const box = $("[data-settings-box]");
  if (!force && box && box.open && form.dataset.dirty === "1") return;
  const room = S.room, settings = room.settings || {};
  if (form.elements.name) {
    form.elements.name.value = unescapeHtml(room.name);
    form.elements.description.value = unescapeHtml(room.description);
    form.elements.password.value = "";
    form.elements.remove_password.checked = false;
    form.elements.remove_password.closest("label").hidden = !room.has_password;
  }
  for (const key of ["hidden", "allow_guests", "join_requires_approval"]) {
    if (form.elements[key]) form.elements[key].checked = Boolean(settings[key]);
  }
  for (const fieldset of $$("[data-mask-field]", form)) {
    const field = fieldset.dataset.maskField;
    const allowedBits = field === "guest_permissions" ? S.perms & GUEST_CAP : S.perms;
    maskBoxes(fieldset, settings[field] || 0, allowedBits);
  }
  form.dataset.dirty = "0";
  if (!form.dataset.watch) {
    form.dataset.watch = "1";
    form.addEventListener("input", () => { form.dataset.dirty = "1"; });
  }
}

async function saveSettings(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const error = $("[data-settings-error]", form);
  showError(error, "");
  const body = {};
  if (form.elements.name && can(PERM.EDIT_ROOM_INFO)) {
    body.name = form.elements.name.value.trim();
    body.description = form.elements.description.value.trim();
    if (form.elements.remove_password.checked) body.password = "";
    else if (form.elements.password.value) body.password = form.elements.password.value;
  }
  if (can(PERM.EDIT_ROOM_SETTINGS) && form.elements.allow_guests) {
    const settings = {};
    for (const key of ["hidden", "allow_guests", "join_requires_approval"]) settings[key] = form.elements[key].checked;
    for (const fieldset of $$("[data-mask-field]", form)) {
      const field = fieldset.dataset.maskField;
      let mask = S.room.settings[field] || 0;
      for (const input of $$("input[data-bit]", fieldset)) {
        const bit = Number(input.dataset.bit);
        mask = input.checked ? mask | bit : mask & ~bit;
      }
      settings[field] = mask;
    }
    body.settings = settings;
  }
  try {
    S.room = await api("PATCH", `rooms/${roomId}`, { body, roomId });
    renderRoom();
    fillSettings(true);
    toast("Settings saved.");
  } catch (err) {
    showError(error, err instanceof ApiError ? err.describe() : err.message);
  }
}

async function loadAudit() {
  const list = $("[data-audit-list]");
  if (!list) return;
  try {
    const data = await api("GET", `rooms/${roomId}/audit-log`, { roomId });
    list.replaceChildren(...data.results.map((e) => h("li", {},
      h("time", { class: "muted small", datetime: e.created_at }, new Date(e.created_at).toLocaleString()), " ",
      h("strong", {}, e.user ? e.user.username : "system"), ` ${e.action}`,
      e.resource_type ? h("span", { class: "muted" }, ` (${e.resource_type})`) : null)));
    if (!data.results.length) list.replaceChildren(h("li", { class: "muted" }, "Nothing yet."));
  } catch (err) {
    list.replaceChildren(h("li", { class: "error" }, err.message));
  }
}

function renderRoomActions() {
  const role = S.me ? S.me.role : null;
  const leave = $("[data-leave]"), del = $("[data-delete-room]");
  leave.hidden = !(role === "member" || role === "admin" || role === "guest");
  leave.textContent = role === "guest" ? "Leave (forget guest name)" : "Leave room";
  del.hidden = !(role === "creator" || role === "site_admin");
}

$("[data-leave]").addEventListener("click", async () => {
  if (!confirm("Leave this room?")) return;
  try {
    if (S.me && S.me.role === "guest") tokens.clearGuest(roomId);
    else await api("POST", `rooms/${roomId}/leave`, { roomId });
    location.assign("/");
  } catch (err) {
    toast(err.message, { kind: "error" });
  }
});
$("[data-delete-room]").addEventListener("click", async () => {
  if (!confirm("Delete this room for everyone? This cannot be undone.")) return;
  try {
    await api("DELETE", `rooms/${roomId}`, { roomId });
    location.assign("/");
  } catch (err) {
    toast(err.message, { kind: "error" });
  }
});

// --- the socket ----------------------------------------------------------------------------------

let pingTimer = 0;
function startPings() {
  clearTimeout(pingTimer);
  let burst = 6;
  const ping = () => {
    if (!S.socket || !S.socket.open) return;
    S.socket.send({ type: "ping", t: localNow() });
    pingTimer = setTimeout(ping, burst-- > 0 ? 150 : 3000);
  };
  ping();
}

function onMessage(msg) {
  // A first clock guess from hello until pongs arrive (not from chat history: its server_time
  // is when each message was written).
  if (msg.type === "hello") clock.coarse(msg.server_time);
  switch (msg.type) {
    case "pong":
      if (Number.isFinite(msg.t)) clock.sample(msg.t, localNow(), msg.server_time);
      break;
    case "hello":
      S.kicked = null;
      S.refusals = 0;
      S.me = msg.member;
      S.room = msg.room || S.room;
      renderRoom();
      S.online = new Map((msg.members_online || []).map((info) => [info.user_id, { ...info }]));
      setPerms(msg.member.effective_permissions, msg.member.role);
      startPings();
      // A fresh start after any reconnect: the server's state as it is now (whatever we had),
      // the playlist and the members.
      S.playback = null;
      follower.state = null;
      applyPlayback(msg.playback);
      loadMovies();
      loadMembers();
      showNotice("");
      break;
    case "playback":
      applyPlayback(msg);
      break;
    case "playlist":
      loadMovies();
      break;
    case "chat":
      addChat(msg);
      break;
    case "emoji":
      showReaction(msg);
      break;
    case "member_joined":
      S.online.set(msg.user.id, {
        user_id: msg.user.id,
        username: msg.user.username,
        guest: Boolean(msg.user.guest),
        role: msg.role,
        ready: msg.ready !== false, // absent on a fresh join: everyone starts ready
      });
      if (S.members && !S.members.some((m) => m.user.id === msg.user.id)) loadMembersSoon();
      renderMembers();
      break;
    case "member_left":
      S.online.delete(msg.user.id);
      maybeResume(msg.user.id);
      renderMembers();
      break;
    case "member_ready": {
      const info = S.online.get(msg.user.id);
      if (info) info.ready = msg.ready;
      renderMembers();
      waitForBuffering(msg.user.id, msg.ready);
      break;
    }
    case "member_updated":
      updateMember(msg.member);
      break;
    case "room_updated":
      S.room = msg.room;
      renderRoom();
      fillSettings(false);
      refreshMe();
      break;
    case "kicked":
      S.kicked = msg.reason;
      break;
    case "error":
      onServerError(msg);
      break;
    case "server_shutdown":
      toast(msg.message || "The server is restarting; reconnecting shortly.", { kind: "warn" });
      break;
    case "publisher_changed":
      if (player.kind === "live") player.reload();
      break;
    default:
      break;
  }
}

function onServerError(msg) {
  if (msg.ref === "auto-next" || msg.ref === "auto-wait") return; // a lost race: someone else did it
  if (msg.code === "connection_refused") {
    S.refusal = msg.message;
    // Too many of our sockets in this room (close 4429): not final, the socket retries with
    // backoff and gets in once another tab closes; say why meanwhile (hello clears it).
    if (msg.details && msg.details.close_code === 4429) showNotice(msg.message);
    return;
  }
  if (msg.code === "rate_limited") { toast("Slow down: too many messages.", { kind: "warn" }); return; }
  if (msg.code === "conflict" && msg.details && msg.details.current) return;
  toast(msg.message || msg.code, { kind: "error" });
  if (msg.code === "permission_denied") { refreshMe(); S.socket.send({ type: "sync" }); }
}

async function refreshMe() {
  try {
    const member = await api("GET", `rooms/${roomId}/members/me`, { roomId });
    updateMember(member);
  } catch { /* the socket tells us if we are out */ }
}

// Optional: a controller may have the room wait (paused) while a viewer buffers, at most 10 s.
function waitForBuffering(userId, ready) {
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

function maybeResume(userId) {
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

function connect() {
  if (S.socket) return;
  S.socket = new RoomSocket({
    url: socketUrl(roomId),
    token: () => socketToken(roomId),
    onMessage,
    onState: (state) => {
      setConn(state);
      if (state !== "connected") clearTimeout(pingTimer);
    },
    onAuthFailed: async () => (tokens.access ? refreshTokens() : false),
    onRefused: (code) => {
      S.socket = null;
      if (code === 4404) { showNotice("This room no longer exists."); player.unload(); return; }
      if (S.kicked && code === 4403) {
        setConn("kicked");
        showNotice(`You were removed from this room (${S.kicked.replace(/_/g, " ")}).`);
        player.unload();
        return;
      }
      if (code === 4401 && !tokens.access) {
        // An expired guest token: offer to join again.
        tokens.clearGuest(roomId);
        start();
        return;
      }
      if (code === 4401) { showNotice("Your session ended. Log in again to rejoin."); return; }
      showNotice(S.refusal || "You cannot enter this room.");
      // Membership may have changed while we were away: ask the API (at most twice in a row).
      S.refusals = (S.refusals || 0) + 1;
      if (S.refusals <= 2) start();
    },
  });
  S.socket.connect();
}

document.addEventListener("visibilitychange", () => {
  // Background tabs run timers slowly: on return, ask for the state and re-measure the clock.
  if (document.visibilityState === "visible" && S.socket && S.socket.open) {
    S.socket.send({ type: "sync" });
    startPings();
  }
});

// --- joining -------------------------------------------------------------------------------------

function showJoin(reason) {
  const panel = $("[data-join-panel]");
  $("[data-room-main]").hidden = true;
  panel.hidden = false;
  for (const old of $$("[data-join-mounted]", panel)) old.remove();
  const mount = (part) => {
    const tpl = $(`template[data-join-part=${part}]`, panel);
    const el = tpl.content.firstElementChild.cloneNode(true);
    el.dataset.joinMounted = "";
    tpl.after(el);
    return el;
  };
  const room = S.room;
  const intro = $("[data-join-intro]");
  const error = $("[data-join-error]");
  showError(error, "");
  if (reason === "pending") {
    intro.textContent = "Your request to join is waiting for a room admin's approval.";
    setTimeout(start, 10000);
    return;
  }
  intro.textContent = invite ? "You were invited to this room." : room.has_password ? "This room has a password." : "";
  if (signedIn()) {
    const form = mount("member");
    if (!room.has_password || invite) $("[data-join-password-row]", form).remove();
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      showError(error, "");
      const body = {};
      if (invite) body.invite = invite;
      const password = $("[data-testid=join-password]", form);
      if (password && password.value) body.password = password.value;
      try {
        const member = await api("POST", `rooms/${roomId}/join`, { body, roomId });
        if (member.status === "pending") { showJoin("pending"); return; }
        if (invite) history.replaceState(null, "", location.pathname);
        enter(member);
      } catch (err) {
        const messages = {
          room_password_wrong: "Wrong password.", room_password_required: "This room needs its password.",
          rate_limited: "Too many attempts; wait a minute.",
        };
        showError(error, messages[err.code] || err.message);
      }
    });
  } else {
    if (room.settings && room.settings.allow_guests && !room.has_password) {
      const form = mount("guest");
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        showError(error, "");
        const name = $("[data-testid=guest-name]", form).value.trim();
        if (!name) { showError(error, "Enter a name."); return; }
        try {
          const result = await api("POST", `rooms/${roomId}/guest`, { body: { name }, auth: false });
          tokens.saveGuest(roomId, { access: result.access, member: result.member });
          enter(result.member);
        } catch (err) {
          showError(error, err.message);
        }
      });
    }
    const login = mount("login");
    const next = encodeURIComponent(location.pathname + location.search);
    $("[data-login-link]", login).href = `/login/?next=${next}`;
    $("[data-signup-link]", login).href = `/signup/?next=${next}`;
  }
}

function enter(member) {
  S.me = member;
  $("[data-join-panel]").hidden = true;
  $("[data-room-main]").hidden = false;
  S.entered = true;
  setPerms(member.effective_permissions, member.role);
  loadMovies();
  connect();
}

async function start() {
  try {
    S.room = await api("GET", `rooms/${roomId}`, { roomId });
  } catch (err) {
    setConn("closed");
    showNotice(err.status === 404 ? "No such room." : `The room cannot be loaded: ${err.message}`);
    if (err.status === 0) setTimeout(start, 3000);
    return;
  }
  renderRoom();
  if (S.room.closed) showNotice("This room is closed.");
  if (!socketToken(roomId)) { setConn("not joined"); showJoin(); return; }
  try {
    const member = await api("GET", `rooms/${roomId}/members/me`, { roomId });
    if (member.status === "pending") { setConn("not joined"); showJoin("pending"); return; }
    enter(member);
  } catch (err) {
    setConn("not joined");
    if (err.status === 403 || err.status === 401 || err.status === 404) { showJoin(); return; }
    showNotice(`The room cannot be loaded: ${err.message}`);
  }
}

setIcon($("[data-fullscreen]"), "fullscreen");
renderVolume();
start();
