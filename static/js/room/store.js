// The room page's state: its whole shape is declared here, once. Every panel module reads it
// through `S` and the readers below; the comment on each field names the module that writes it.
// Writers that change several fields together are named functions here; a field that one module
// alone owns (the seek drag, the wait-for-buffering bookkeeping) is written in place by that
// module. Plain state, no framework: rendering stays explicit in each module (docs/web.md,
// "Where the room page's code lives").
import { has, RANK } from "../perms.js";

/** The room's id, from `<body data-room-id>` (templates/web/room.html). */
export const roomId = document.body.dataset.roomId;

/**
 * @typedef {object} OnlineInfo One member with a socket open in the room (presence).
 * @property {string} user_id
 * @property {string} username
 * @property {boolean} [guest] a guest's name is whatever they typed
 * @property {string} role
 * @property {boolean} ready false while their player is buffering (`member_ready`)
 */

/**
 * @typedef {object} PlaybackState What the room plays, as the server last said (`hello`,
 *   `playback`); `version` orders the changes.
 * @property {string|null} movie_id
 * @property {boolean} playing
 * @property {number} position seconds, at `server_time`
 * @property {number} rate
 * @property {string} updated_at
 * @property {number} version
 * @property {number} server_time
 */

/**
 * @typedef {object} RoomState
 * @property {object|null} room The room as the API serves it (name, description, has_password,
 *   closed, settings). Written by room.js (`start`, `room_updated`), acceptHello() and
 *   room/settings.js (after saving).
 * @property {object|null} me Our own member row: {user, role, status, effective_permissions,
 *   permissions_added, permissions_removed}. Written by acceptHello(), room.js (`enter`),
 *   setPermissions() (role) and room/members.js (`updateMember`, when the row is ours).
 * @property {number} perms Our effective permission mask (perms.js `PERM` bits); every gated
 *   control follows it. Written by setPermissions() only.
 * @property {object[]} movies The playlist in order. Written by room/playlist.js only.
 * @property {PlaybackState|null} playback Written by setPlayback() (newer versions only) and
 *   cleared by room.js on `hello`.
 * @property {Map<string, OnlineInfo>} online Members online now, by user id. Written by
 *   acceptHello(), memberOnline(), memberOffline(), memberReady() and room/members.js (a new
 *   role).
 * @property {object[]|null} members The full active member list, or null without
 *   VIEW_MEMBER_LIST. Written by room/members.js only.
 * @property {Set<number>} chatSeen Ids of the chat messages shown, so the history that comes
 *   again after a reconnect is not shown twice. Written by room/chat.js only.
 * @property {import("../socket.js").RoomSocket|null} socket The room socket, null while there is
 *   none (before joining, after a final refusal). Written by room.js only.
 * @property {boolean} seekDragging True while the seek slider is held: the clock does not move
 *   it meanwhile. Written by room/playback.js only.
 * @property {Set<string>} waitFor Viewers we paused the room for ("pause the room while a viewer
 *   buffers"). Written by room/playback.js only.
 * @property {number|null} autoPausedVersion The version our automatic pause got, null when we
 *   are not waiting. Written by room/playback.js only.
 * @property {number} waitTimer The 10 s limit on that wait (a setTimeout id). Written by
 *   room/playback.js only.
 * @property {string|null} kicked The reason of the `kicked` event just before a close 4403, so
 *   the page says so and stops instead of retrying. Written by room.js and acceptHello().
 * @property {string|null} refusal The message of the last `connection_refused` error, shown when
 *   the socket gives up. Written by room.js only.
 * @property {number} refusals Refused connections in a row (the page asks the API again at most
 *   twice). Written by room.js and acceptHello().
 */

/** @returns {RoomState} the state of a page that has not joined yet. */
export function createRoomState() {
  return {
    room: null,
    me: null,
    perms: 0,
    movies: [],
    playback: null,
    online: new Map(),
    members: null,
    chatSeen: new Set(),
    socket: null,
    seekDragging: false,
    waitFor: new Set(),
    autoPausedVersion: null,
    waitTimer: 0,
    kicked: null,
    refusal: null,
    refusals: 0,
  };
}

/** The page's one state. */
export const S = createRoomState();

// --- readers -------------------------------------------------------------------------------------

/** True when we hold every one of `bits`. */
export const can = (...bits) => has(S.perms, ...bits);
/** Our user id, or null before we are a member. */
export const myId = () => (S.me && S.me.user ? S.me.user.id : null);
/** A role's rank (perms.js `RANK`); -1 for an unknown role. */
export const rank = (role) => RANK[role] ?? -1;

/** The playlist entry the room plays, or null (nothing, or the playlist is on its way). */
export function currentMovie() {
  const id = S.playback ? S.playback.movie_id : null;
  return id ? S.movies.find((m) => m.id === id) || null : null;
}

// --- writers -------------------------------------------------------------------------------------

const permissionListeners = [];

/** `fn()` runs after every setPermissions(): room.js mounts the controls and redraws the panels. */
export function onPermissionsChange(fn) {
  permissionListeners.push(fn);
}

/** Our effective mask (and role) changed: from `hello`, joining, or our own member row. */
export function setPermissions(mask, role) {
  S.perms = Number(mask) || 0;
  if (role && S.me) S.me.role = role;
  for (const fn of permissionListeners) fn();
}

/** `hello`: a fresh start on every (re)connect: who we are, the room and who is online. */
export function acceptHello(msg) {
  S.kicked = null;
  S.refusals = 0;
  S.me = msg.member;
  S.room = msg.room || S.room;
  S.online = new Map((msg.members_online || []).map((info) => [info.user_id, { ...info }]));
}

/** `members_changed` (synctv.v2): who came and went since the last batch. */
export function membersChanged(msg) {
  for (const userId of msg.left || []) S.online.delete(userId);
  for (const info of msg.joined || []) S.online.set(info.user_id, { ...info });
}

/** `members_page`, or the hello's first page: more of who is online (the socket asks for the rest). */
export function membersPage(members) {
  for (const info of members || []) S.online.set(info.user_id, { ...info });
}

/** Takes a playback state unless it is older than ours; true when taken. */
export function setPlayback(state) {
  if (S.playback && state.version < S.playback.version) return false;
  S.playback = {
    movie_id: state.movie_id, playing: state.playing, position: state.position, rate: state.rate,
    updated_at: state.updated_at, version: state.version, server_time: state.server_time,
  };
  return true;
}

/** `member_joined`: `msg.user` opened a socket in the room. */
export function memberOnline(msg) {
  S.online.set(msg.user.id, {
    user_id: msg.user.id,
    username: msg.user.username,
    guest: Boolean(msg.user.guest),
    role: msg.role,
    ready: msg.ready !== false, // absent on a fresh join: everyone starts ready
  });
}

/** `member_left`, or we kicked or banned them. */
export function memberOffline(userId) {
  S.online.delete(userId);
}

/** `member_ready`: their player stopped or started buffering. */
export function memberReady(userId, ready) {
  const info = S.online.get(userId);
  if (info) info.ready = ready;
}
