// Chat and reactions: the message log (de-duplicated across reconnects by `S.chatSeen`), the
// chat form with its emoji picker, and the reaction bar whose emoji float over the player.
import { $, h, toast, unescapeHtml } from "../common.js";
import { guestBadge } from "./members.js";
import { myId, S } from "./store.js";

const REACTIONS = ["👍", "😂", "😮", "😢", "❤️", "🎉", "👏", "🔥"];
const PICKER = ["😀", "😂", "😍", "🤔", "😮", "😢", "😡", "👍", "👎", "👏", "🙏", "🎉", "🔥", "❤️", "💯", "🍿", "🎬", "👀", "😴", "🤣", "😎", "🥳", "😱", "✨"];

export function addChat(msg) {
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

export function showReaction(msg) {
  const box = $("[data-reactions]");
  const item = h("span", { class: "reaction" }, unescapeHtml(msg.emoji));
  item.style.left = `${10 + Math.random() * 75}%`;
  item.title = msg.user ? `${msg.user.username}${msg.user.guest ? " (guest)" : ""}` : "";
  box.append(item);
  setTimeout(() => item.remove(), 2600);
}

// The chat's parts mounted per permission (perms.js applyParts; room.js merges the parts).
export const chatParts = {
  "emoji-bar": (bar) => {
    for (const emoji of REACTIONS) {
      bar.append(h("button", {
        type: "button", class: "icon emoji", "aria-label": `React ${emoji}`,
        onclick: () => S.socket && S.socket.send({ type: "emoji", emoji }),
      }, emoji));
    }
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
};
