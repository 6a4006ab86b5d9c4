// Room permission bits (docs/security.md, "What they may do"; apps/permissions/flags.py) and the
// mounting of the page's permission-gated parts. A control the member may not use is absent from
// the page, not disabled: it lives in a <template data-part=... data-requires=...> and is cloned
// into the document only while the member's effective permissions allow it (and removed when
// they stop).

export const PERM = Object.freeze({
  SEND_CHAT_MESSAGE: 1, SEND_EMOJI: 2, ADD_MOVIE: 4, DELETE_MOVIE: 8, EDIT_MOVIE: 16,
  REORDER_PLAYLIST: 32, PLAY_CONTROL: 64, CHANGE_CURRENT_MOVIE: 128, INVITE_MEMBERS: 256,
  VIEW_MEMBER_LIST: 512, KICK_MEMBERS: 1024, BAN_MEMBERS: 2048, EDIT_ROOM_INFO: 4096,
  EDIT_ROOM_SETTINGS: 8192, MANAGE_ADMINS: 16384, VIEW_AUDIT_LOG: 32768,
});

export const LABELS = Object.freeze({
  SEND_CHAT_MESSAGE: "Chat", SEND_EMOJI: "Send reactions", ADD_MOVIE: "Add videos",
  DELETE_MOVIE: "Remove videos", EDIT_MOVIE: "Edit videos", REORDER_PLAYLIST: "Reorder the playlist",
  PLAY_CONTROL: "Play, pause and seek", CHANGE_CURRENT_MOVIE: "Change the video",
  INVITE_MEMBERS: "Invite", VIEW_MEMBER_LIST: "See members", KICK_MEMBERS: "Kick",
  BAN_MEMBERS: "Ban", EDIT_ROOM_INFO: "Edit name and password", EDIT_ROOM_SETTINGS: "Edit settings",
  MANAGE_ADMINS: "Manage admins", VIEW_AUDIT_LOG: "Read the audit log",
});

export const GUEST_CAP = PERM.SEND_CHAT_MESSAGE | PERM.SEND_EMOJI | PERM.VIEW_MEMBER_LIST;
export const RANK = Object.freeze({ guest: 0, member: 1, admin: 2, creator: 3, site_admin: 3 });

const bitsOf = (names) => (names || "").split(/\s+/).filter(Boolean)
  .reduce((mask, name) => mask | (PERM[name] || 0), 0);

export const has = (mask, ...bits) => bits.every((bit) => (mask & bit) === bit);

function allowed(tpl, mask) {
  const d = tpl.dataset;
  if (d.requires && !has(mask, bitsOf(d.requires))) return false;
  if (d.requiresAny && !(mask & bitsOf(d.requiresAny))) return false;
  if (d.lacks && (mask & bitsOf(d.lacks)) === bitsOf(d.lacks)) return false;
  return true;
}

const mounted = new WeakMap(); // template -> the nodes cloned from it

// Mount or unmount every gated part under root for `mask`. `setup[part](element)` runs each time
// a part enters the document (to bind its handlers and fill it in).
export function applyParts(root, mask, setup = {}) {
  const entered = [];
  for (let pass = 0; pass < 4; pass += 1) { // nested templates appear once their parent is in
    let changed = false;
    for (const tpl of root.querySelectorAll("template[data-part]")) {
      const nodes = mounted.get(tpl);
      const ok = allowed(tpl, mask);
      if (ok && !nodes) {
        const fragment = tpl.content.cloneNode(true);
        const added = Array.from(fragment.childNodes);
        tpl.after(fragment);
        mounted.set(tpl, added);
        entered.push([tpl.dataset.part, added.find((n) => n.nodeType === Node.ELEMENT_NODE)]);
        changed = true;
      } else if (!ok && nodes) {
        nodes.forEach((n) => n.remove());
        mounted.delete(tpl);
        changed = true;
      }
    }
    if (!changed) break;
  }
  for (const [part, el] of entered) if (setup[part] && el && el.isConnected) setup[part](el);
  return entered.map(([part]) => part);
}
