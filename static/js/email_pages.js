// The e-mail pages: /forgot-password/ (asks auth/password/reset), /reset-password/?key= (posts the
// key and a new password to auth/password/reset/confirm) and /verify-email/?key= (posts the key to
// auth/email/verify when the button is pressed: a mail scanner that opens the link verifies
// nothing). The outcome goes to `data-testid=auth-message`, in words, as text.
import { api, ApiError, tokens } from "./api.js";
import { $, initAccountNav, showError } from "./common.js";

const form = $("[data-email-form]");
const page = form.dataset.emailForm;
const error = $("[data-testid=auth-error]");
const message = $("[data-testid=auth-message]");
const submit = $("[data-testid=auth-submit]");
const key = new URLSearchParams(location.search).get("key") || "";

initAccountNav();

function say(text) {
  message.textContent = text;
  message.hidden = !text;
}

function done(text) {
  form.hidden = true;
  say(text);
}

function describe(err) {
  if (!(err instanceof ApiError)) return String(err);
  if (err.code === "rate_limited") return `Too many attempts. Try again in ${err.retryAfter || 60} s.`;
  if (err.status === 400 && err.details && err.details.key) {
    return page === "verify-email"
      ? "This link is invalid, already used or expired. Log in to ask for a new one; if your account cannot log in yet, \"Forgot password\" also confirms your address."
      : "This link is invalid, already used or expired. Ask for a new one.";
  }
  return err.describe();
}

const actions = {
  "forgot-password": async (data) => {
    const email = (data.email || "").trim();
    if (!email) throw new Error("Enter your e-mail address.");
    await api("POST", "auth/password/reset", { body: { email }, auth: false });
    done("If an account has this address, a link to choose a new password is on its way. Check your inbox.");
  },
  "reset-password": async (data) => {
    if (!data.password) throw new Error("Enter a new password.");
    const result = await api("POST", "auth/password/reset/confirm", { body: { key, password: data.password }, auth: false });
    // Every session of that account has ended: if this browser held one, it is gone.
    if (result && result.user && tokens.user && tokens.user.id === result.user.id) tokens.clear();
    done("Your password is changed. Log in with it.");
  },
  "verify-email": async () => {
    const result = await api("POST", "auth/email/verify", { body: { key }, auth: false });
    const role = result && result.user ? result.user.role : "";
    done(role === "pending"
      ? "Your address is confirmed. Your account still awaits approval."
      : "Your address is confirmed. You can log in.");
  },
};

if (page !== "forgot-password" && !key) {
  done("This link is incomplete: open the whole link from the e-mail.");
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  showError(error, "");
  submit.disabled = true;
  try {
    await actions[page](Object.fromEntries(new FormData(form)));
  } catch (err) {
    showError(error, describe(err));
  } finally {
    submit.disabled = false;
  }
});
