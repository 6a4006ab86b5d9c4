// The join panel, for a visitor who is not a member yet: join (with the password or the
// `?invite=` code), join as a guest where the room allows it, or log in / sign up first; and the
// wait for an admin's approval.
import { api, signedIn, tokens } from "../api.js";
import { $, $$, showError } from "../common.js";
import { roomId, S } from "./store.js";

const invite = new URLSearchParams(location.search).get("invite");

/**
 * Show the join panel instead of the room.
 * @param {string|undefined} reason "pending" while our request waits for approval.
 * @param {{enter: (member: object) => void, retry: () => void}} then `enter` once we are a
 *   member; `retry` asks the API again (room.js `start`).
 */
export function showJoin(reason, then) {
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
    setTimeout(then.retry, 10000);
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
        if (member.status === "pending") { showJoin("pending", then); return; }
        if (invite) history.replaceState(null, "", location.pathname);
        then.enter(member);
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
          then.enter(result.member);
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
