// Small helpers every page uses: DOM, toasts, the account links in the header.
import { logout, signedIn, tokens } from "./api.js";

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

// h("li", {class: "x", dataset: {movieId: 1}, onclick: fn}, "text", child) — never innerHTML.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "text") el.textContent = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// The server escapes some text before it leaves (chat, room name and description: & < > " ').
// Undo exactly that, then always insert as text.
const ENTITIES = { "&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": '"', "&#x27;": "'", "&#39;": "'" };
export const unescapeHtml = (s) => String(s ?? "").replace(/&(amp|lt|gt|quot|#x27|#39);/g, (m) => ENTITIES[m]);

export function formatTime(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "0:00";
  const s = Math.floor(seconds % 60), m = Math.floor(seconds / 60) % 60, hr = Math.floor(seconds / 3600);
  const pad = (n) => String(n).padStart(2, "0");
  return hr ? `${hr}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
}

export function toast(message, { kind = "info", ms = 4000 } = {}) {
  const box = $("[data-toasts]");
  if (!box) return;
  const item = h("p", { class: `toast ${kind}` }, message);
  box.append(item);
  while (box.children.length > 4) box.firstElementChild.remove();
  setTimeout(() => item.remove(), ms);
}

export function showError(el, message) {
  if (!el) return;
  el.textContent = message || "";
  el.hidden = !message;
}

// A path on this site for a `next` value from the URL or storage, else the room list. The value
// is resolved the way the browser would resolve it (which drops tabs and newlines, turns "\" into
// "/" and collapses dot segments: "/\t/evil.example" is "//evil.example"), and only an http(s)
// URL of this origin is kept. What comes back is that URL's path, query and fragment, never the
// raw value; a path that still starts with "//" would be read as another host, so it is refused.
export function safeNext(raw) {
  if (typeof raw !== "string" || !raw) return "/";
  let url;
  try {
    url = new URL(raw, location.origin);
  } catch {
    return "/";
  }
  if ((url.protocol !== "http:" && url.protocol !== "https:") || url.origin !== location.origin) return "/";
  if (url.pathname.startsWith("//")) return "/";
  return url.pathname + url.search + url.hash;
}

// Where to go after logging in: ?next= when it is a page of this site, else the room list.
export function nextPath() {
  return safeNext(new URLSearchParams(location.search).get("next"));
}

export function initAccountNav() {
  const user = tokens.user;
  const inside = signedIn();
  for (const el of $$("[data-when]")) el.hidden = (el.dataset.when === "signed-in") !== inside;
  const name = $("[data-account-name]");
  if (name) name.textContent = user ? user.username : "";
  const out = $("[data-logout]");
  if (out) out.addEventListener("click", async () => { await logout(); location.assign("/"); });
  // Carry ?next= across the log-in / sign-up links, and send people back where they were.
  for (const a of $$("a[href='/login/'], a[href='/signup/']")) {
    const next = a.hasAttribute("data-keep-next") ? nextPath() : location.pathname + location.search;
    if (next !== "/" && !a.href.includes("next=")) a.href = `${a.pathname}?next=${encodeURIComponent(next)}`;
  }
}
