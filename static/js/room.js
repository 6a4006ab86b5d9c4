// The room page (/rooms/{id}/): join, player in sync, playlist, chat, members, settings.
// Everything comes from the REST API and the room WebSocket; the page shows only the controls the
// member's effective permissions allow (perms.js mounts and unmounts them).
//
// This is the entry point: it joins, opens the socket and dispatches its events to the panels in
// room/ (the state's shape is in room/store.js; docs/web.md, "Where the room page's code lives").
import { api, refreshTokens, socketToken, tokens } from "./api.js";
import { $, initAccountNav, toast } from "./common.js";
import { serviceDegraded } from "./degraded.js";
import { applyParts } from "./perms.js";
import { RoomSocket, socketUrl } from "./socket.js";
import { CLOCK, localNow } from "./sync.js";
import { addChat, chatParts, showReaction } from "./room/chat.js";
import { showJoin } from "./room/join.js";
import { loadMembers, loadMembersSoon, membersParts, renderMembers, updateMember } from "./room/members.js";
import {
  clock, follower, maybeResume, player, playbackParts, publisherChanged, renderControls, syncMovie,
  waitForBuffering,
} from "./room/playback.js";
import { loadMovies, playlistParts, renderPlaylist } from "./room/playlist.js";
import { fillSettings, renderRoom, renderRoomActions, settingsParts } from "./room/settings.js";
import {
  acceptHello, memberOffline, memberOnline, memberReady, membersChanged, membersPage, onPermissionsChange, roomId,
  S, setPermissions, setPlayback,
} from "./room/store.js";

const connState = $("[data-testid=connection-state]");
const notice = $("[data-room-notice]");

initAccountNav();

function setConn(state) {
  connState.textContent = state;
  connState.dataset.state = state;
}

function showNotice(message) {
  notice.textContent = message || "";
  notice.hidden = !message;
}

// Every gated part of the page (`<template data-part=...>`) and what binds it when it mounts.
const setup = { ...playbackParts, ...chatParts, ...playlistParts, ...membersParts, ...settingsParts };

// Our permissions changed: mount or unmount the gated controls, then redraw what depends on them.
onPermissionsChange(() => {
  applyParts($("[data-room-main]"), S.perms, setup);
  renderPlaylist();
  renderMembers();
  renderControls();
  renderRoomActions();
  fillSettings(false);
});

function applyPlayback(state) {
  if (!setPlayback(state)) return;
  syncMovie();
  follower.setState(S.playback);
  renderPlaylist();
  renderControls();
}

// --- the socket ----------------------------------------------------------------------------------

let pingTimer = 0;
function startPings() {
  clearTimeout(pingTimer);
  // A burst first: the clock trusts its estimate after CLOCK.trustAfter samples (static/js/sync.js);
  // then one a second for a minute, while the estimate tightens; then one every 3 s.
  let burst = CLOCK.trustAfter - 1;
  const started = performance.now();
  const ping = () => {
    if (!S.socket || !S.socket.open) return;
    S.socket.send({ type: "ping", t: localNow() });
    const next = burst-- > 0 ? 150 : performance.now() - started < 60000 ? 1000 : 3000;
    pingTimer = setTimeout(ping, next);
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
      acceptHello(msg);
      askForMoreMembers(msg.members_next);
      renderRoom();
      setPermissions(msg.member.effective_permissions, msg.member.role);
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
      memberOnline(msg);
      if (S.members && !S.members.some((m) => m.user.id === msg.user.id)) loadMembersSoon();
      renderMembers();
      break;
    case "member_left":
      memberOffline(msg.user.id);
      maybeResume(msg.user.id);
      renderMembers();
      break;
    case "members_changed":
      membersChanged(msg);
      for (const userId of msg.left || []) maybeResume(userId);
      if (S.members && (msg.joined || []).some((info) => !S.members.some((m) => m.user.id === info.user_id))) {
        loadMembersSoon();
      }
      renderMembers();
      break;
    case "members_page":
      membersPage(msg.members);
      askForMoreMembers(msg.next);
      renderMembers();
      break;
    case "member_ready":
      memberReady(msg.user.id, msg.ready);
      renderMembers();
      waitForBuffering(msg.user.id, msg.ready);
      break;
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
      // With a drain the socket moves to another server without a break: nothing to say.
      if (!(Number(msg.drain_ms) > 0)) toast(msg.message || "The server is restarting; reconnecting shortly.", { kind: "warn" });
      break;
    case "publisher_changed":
      publisherChanged(msg.stream_id);
      break;
    default:
      break;
  }
}

// synctv.v2: the hello lists the first page of who is online; the rest comes page by page. The
// batches of changes (`members_changed`) keep what we have current meanwhile.
function askForMoreMembers(after) {
  if (after && S.socket && S.socket.open) S.socket.send({ type: "members", after, limit: 200 });
}

function onServerError(msg) {
  if (msg.ref === "auto-next" || msg.ref === "auto-wait") return; // a lost race: someone else did it
  const cause = msg.details && msg.details.cause;
  if (msg.code === "service_degraded" || cause === "service_degraded") serviceDegraded();
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
      S.refusals += 1;
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

const join = (reason) => showJoin(reason, { enter, retry: start });

function enter(member) {
  S.me = member;
  $("[data-join-panel]").hidden = true;
  $("[data-room-main]").hidden = false;
  setPermissions(member.effective_permissions, member.role);
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
  if (!socketToken(roomId)) { setConn("not joined"); join(); return; }
  try {
    const member = await api("GET", `rooms/${roomId}/members/me`, { roomId });
    if (member.status === "pending") { setConn("not joined"); join("pending"); return; }
    enter(member);
  } catch (err) {
    setConn("not joined");
    if (err.status === 403 || err.status === 401 || err.status === 404) { join(); return; }
    showNotice(`The room cannot be loaded: ${err.message}`);
  }
}

start();
