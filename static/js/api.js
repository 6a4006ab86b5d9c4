// The REST API (/api/v1/) with the caller's tokens. Tokens live in localStorage: the page is a
// client of the API like any other (docs/api.md: Authorization: Bearer). A guest token is bound to one
// room and kept per room.
import { serviceDegraded } from "./degraded.js";

const PREFIX = "/api/v1/";
const KEYS = { access: "synctv.access", refresh: "synctv.refresh", user: "synctv.user" };
const guestKey = (roomId) => `synctv.guest.${roomId}`;

export class ApiError extends Error {
  constructor(status, body, retryAfter) {
    const error = (body && body.error) || {};
    super(error.message || `Request failed (${status})`);
    this.status = status;
    this.code = error.code || (status === 0 ? "network" : "error");
    this.details = error.details || {};
    this.retryAfter = retryAfter;
  }

  // "field: message" lines for a 400 with field errors, else the message.
  describe() {
    const lines = [];
    for (const [field, messages] of Object.entries(this.details || {})) {
      const text = Array.isArray(messages) ? messages.join(" ") : typeof messages === "string" ? messages : "";
      if (text) lines.push(field === "non_field_errors" ? text : `${field}: ${text}`);
    }
    return lines.length ? lines.join("\n") : this.message;
  }
}

export const tokens = {
  get access() { return localStorage.getItem(KEYS.access); },
  get refresh() { return localStorage.getItem(KEYS.refresh); },
  get user() {
    try { return JSON.parse(localStorage.getItem(KEYS.user) || "null"); } catch { return null; }
  },
  save({ access, refresh, user }) {
    if (access) localStorage.setItem(KEYS.access, access);
    if (refresh) localStorage.setItem(KEYS.refresh, refresh);
    if (user) localStorage.setItem(KEYS.user, JSON.stringify(user));
  },
  clear() { Object.values(KEYS).forEach((k) => localStorage.removeItem(k)); },
  guest(roomId) {
    try { return JSON.parse(localStorage.getItem(guestKey(roomId)) || "null"); } catch { return null; }
  },
  saveGuest(roomId, value) { localStorage.setItem(guestKey(roomId), JSON.stringify(value)); },
  clearGuest(roomId) { localStorage.removeItem(guestKey(roomId)); },
};

export const signedIn = () => Boolean(tokens.access && tokens.user);

let refreshing = null;

// Rotate the refresh token once, however many requests noticed the expiry at the same time.
export function refreshTokens() {
  if (!tokens.refresh) return Promise.resolve(false);
  if (!refreshing) {
    refreshing = (async () => {
      try {
        const body = await request("POST", "auth/refresh", { body: { refresh: tokens.refresh }, token: null });
        tokens.save(body);
        return true;
      } catch (err) {
        if (err.status === 401) tokens.clear();
        return false;
      } finally {
        setTimeout(() => { refreshing = null; }, 0);
      }
    })();
  }
  return refreshing;
}

async function request(method, path, { body, token, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(PREFIX + path, {
      method, headers, signal, credentials: "omit",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, { error: { message: "The server cannot be reached." } });
  }
  if (response.status === 204) return null;
  let data = null;
  const text = await response.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (!response.ok) {
    const err = new ApiError(response.status, data, Number(response.headers.get("Retry-After")) || null);
    if (err.code === "service_degraded") serviceDegraded();
    throw err;
  }
  return data;
}

// api("GET", "rooms/x/movies", {body, roomId}): with the account's token (refreshed once on a 401),
// or the room's guest token when there is no account.
export async function api(method, path, { body, roomId, auth = true, signal } = {}) {
  const guest = roomId ? tokens.guest(roomId) : null;
  const useAccount = auth && tokens.access;
  const token = !auth ? null : useAccount ? tokens.access : guest ? guest.access : null;
  try {
    return await request(method, path, { body, token, signal });
  } catch (err) {
    const retryable = err.status === 401 && useAccount && ["token_invalid", "not_authenticated"].includes(err.code);
    if (retryable && (await refreshTokens())) return request(method, path, { body, token: tokens.access, signal });
    if (err.status === 401 && !useAccount && guest) tokens.clearGuest(roomId);
    throw err;
  }
}

// The token a room's WebSocket should present: the account's, else this room's guest token.
export function socketToken(roomId) {
  if (tokens.access) return tokens.access;
  const guest = tokens.guest(roomId);
  return guest ? guest.access : null;
}

export async function logout() {
  const refresh = tokens.refresh;
  if (tokens.access && refresh) {
    try { await request("POST", "auth/logout", { body: { refresh }, token: tokens.access }); } catch { /* gone anyway */ }
  }
  tokens.clear();
}
