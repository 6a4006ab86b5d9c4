// The room list (/): search, open, create.
import { api, signedIn } from "./api.js";
import { $, h, initAccountNav, showError, unescapeHtml } from "./common.js";

initAccountNav();

const list = $("[data-room-list]");
const empty = $("[data-room-empty]");
const more = $("[data-room-more]");
const search = $("[data-testid=room-search]");
let page = 1;
let query = "";
let pending = null;

function roomItem(room) {
  const meta = [
    `${room.member_count} member${room.member_count === 1 ? "" : "s"}`,
    room.has_password ? "password" : null,
    room.settings && room.settings.allow_guests ? "guests welcome" : null,
  ].filter(Boolean).join(" · ");
  return h("li", { class: "room-item" },
    h("a", { href: `/rooms/${encodeURIComponent(room.id)}/`, "data-testid": "room-link", dataset: { roomId: room.id } },
      h("span", { class: "room-name" }, room.has_password ? "🔒 " : "", unescapeHtml(room.name)),
      room.description ? h("span", { class: "room-desc muted" }, unescapeHtml(room.description)) : null,
      h("span", { class: "room-meta muted" }, `by ${room.creator ? room.creator.username : "?"} · ${meta}`)));
}

async function load({ append = false } = {}) {
  if (pending) pending.abort();
  const controller = new AbortController();
  pending = controller;
  const params = new URLSearchParams({ page: String(page) });
  if (query) params.set("search", query);
  try {
    const data = await api("GET", `rooms?${params}`, { signal: controller.signal });
    if (!append) list.replaceChildren();
    for (const room of data.results) list.append(roomItem(room));
    empty.hidden = list.children.length > 0;
    more.hidden = !data.next;
  } catch (err) {
    if (err.name !== "AbortError") {
      list.replaceChildren(h("li", { class: "error" }, `Could not load rooms: ${err.message}`));
      empty.hidden = true;
    }
  }
}

let debounce = 0;
search.addEventListener("input", () => {
  clearTimeout(debounce);
  debounce = setTimeout(() => { query = search.value.trim(); page = 1; load(); }, 250);
});
more.addEventListener("click", () => { page += 1; load({ append: true }); });
load();

const form = $("[data-create-room]");
if (form && signedIn()) {
  const error = $("[data-create-error]");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(error, "");
    const data = new FormData(form);
    const body = {
      name: String(data.get("name") || "").trim(),
      settings: {
        hidden: data.has("hidden"),
        allow_guests: data.has("allow_guests"),
        join_requires_approval: data.has("join_requires_approval"),
      },
    };
    const description = String(data.get("description") || "").trim();
    if (description) body.description = description;
    const password = String(data.get("password") || "");
    if (password) body.password = password;
    if (!body.name) { showError(error, "Give the room a name."); return; }
    const button = $("[data-testid=room-create-submit]");
    button.disabled = true;
    try {
      const room = await api("POST", "rooms", { body });
      location.assign(`/rooms/${encodeURIComponent(room.id)}/`);
    } catch (err) {
      showError(error, err.status === 401 ? "Log in again to create a room." : err.describe ? err.describe() : err.message);
    } finally {
      button.disabled = false;
    }
  });
}
