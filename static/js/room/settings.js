// The room itself: its name and description in the header, the settings panel (room info,
// options, permission masks), invite links, the audit log, and leaving or deleting the room.
import { api, ApiError, tokens } from "../api.js";
import { $, $$, h, showError, toast, unescapeHtml } from "../common.js";
import { GUEST_CAP, has, LABELS, PERM } from "../perms.js";
import { can, roomId, S } from "./store.js";

export function renderRoom() {
  const room = S.room;
  if (!room) return;
  const name = unescapeHtml(room.name);
  $("[data-room-name]").textContent = name;
  document.title = `${name} · SyncTV`;
  $("[data-room-description]").textContent = unescapeHtml(room.description);
}

function maskBoxes(fieldset, value, allowedBits) {
  fieldset.querySelectorAll("label").forEach((l) => l.remove());
  for (const [key, bit] of Object.entries(PERM)) {
    if (!(allowedBits & bit)) continue;
    fieldset.append(h("label", { class: "inline-check" },
      h("input", { type: "checkbox", checked: has(value, bit), dataset: { bit: String(bit) } }), ` ${LABELS[key]}`));
  }
}

// Fill the settings form from `S.room`; unless forced, an open form with unsaved edits is left
// alone (another member's change must not wipe what this one is typing).
export function fillSettings(force) {
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

// The settings panel's parts mounted per permission (perms.js applyParts; room.js merges them).
export const settingsParts = {
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

// --- leave, delete -------------------------------------------------------------------------------

export function renderRoomActions() {
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
