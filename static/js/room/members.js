// The members panel: who is online (presence from the socket) merged with the full member list
// (VIEW_MEMBER_LIST), and the moderation on it: make admin/member, kick, ban, per-member
// permissions, and the pending (approve) and banned (unban) lists.
import { api } from "../api.js";
import { $, h, toast } from "../common.js";
import { has, LABELS, PERM, RANK } from "../perms.js";
import { can, memberOffline, myId, rank, roomId, S, setPermissions } from "./store.js";

// A guest's name is whatever they typed: always shown marked, so "alice (guest)" cannot pass for
// the registered alice (user objects carry `guest`).
export function guestBadge() {
  return h("span", { class: "badge role-guest", title: "Guest: a name they chose, not an account" }, "guest");
}

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
export function loadMembersSoon() {
  clearTimeout(membersTimer);
  membersTimer = setTimeout(loadMembers, 300);
}

export async function loadMembers() {
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

export function renderMembers() {
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
    if (action === "kick" || action === "ban") memberOffline(userId);
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

// A member row changed (ours or another's: from the API, `member_updated` or `members/me`).
export function updateMember(member) {
  if (!member || !member.user) return;
  if (member.user.id === myId()) {
    S.me = { ...S.me, ...member };
    setPermissions(member.effective_permissions, member.role);
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

// The members panel's parts mounted per permission (perms.js applyParts; room.js merges them).
export const membersParts = {
  members: () => { loadMembers(); },
  pending: (box) => { box.addEventListener("toggle", () => box.open && loadModerationList("pending")); },
  banned: (box) => { box.addEventListener("toggle", () => box.open && loadModerationList("banned")); },
};
