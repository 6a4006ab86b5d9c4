// Log in / sign up (/login/, /signup/). OAuth buttons appear only for providers the server
// reports as configured (GET auth/providers), one `data-testid=oauth-{id}` button each.
import { api, ApiError, tokens } from "./api.js";
import { $, h, initAccountNav, nextPath, showError } from "./common.js";

const form = $("[data-auth-form]");
const mode = form.dataset.authForm;
const error = $("[data-testid=auth-error]");
const submit = $("[data-testid=auth-submit]");

initAccountNav();

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  showError(error, "");
  const data = Object.fromEntries(new FormData(form));
  if (!data.username || !data.password) {
    showError(error, "Enter a username and a password.");
    return;
  }
  const body = { username: data.username.trim(), password: data.password };
  if (mode === "signup" && data.email) body.email = data.email.trim();
  submit.disabled = true;
  try {
    const result = await api("POST", mode === "signup" ? "auth/register" : "auth/login", { body, auth: false });
    if (!result.access) {
      // 202: the account waits for e-mail verification (or review): "check your inbox".
      form.hidden = true;
      const message = $("[data-testid=auth-message]");
      message.textContent = body.email
        ? `Check your inbox: we sent a link to ${body.email}. Open it to confirm your address.`
        : "Account created. It becomes usable once an administrator approves it.";
      message.hidden = false;
      if (body.email) offerResend(body.email, message);
      return;
    }
    tokens.save(result);
    location.assign(nextPath());
  } catch (err) {
    let message = err instanceof ApiError ? err.describe() : String(err);
    if (err.status === 401) message = "Wrong username or password.";
    if (err.code === "rate_limited") message = `Too many attempts. Try again in ${err.retryAfter || 60} s.`;
    showError(error, message);
  } finally {
    submit.disabled = false;
  }
});

// "Send the link again" under "check your inbox": the resend without a login (the account is
// pending and cannot log in), which answers the same whether or not a link goes out.
function offerResend(email, message) {
  const again = $("[data-testid=resend-link]");
  if (!again) return;
  again.hidden = false;
  again.addEventListener("click", async () => {
    again.disabled = true;
    showError(error, "");
    try {
      const result = await api("POST", "auth/email/resend", { body: { email }, auth: false });
      message.textContent = result.detail;
    } catch (err) {
      showError(error, err.code === "rate_limited"
        ? `Too many requests. Try again in ${err.retryAfter || 60} s.`
        : (err instanceof ApiError ? err.describe() : String(err)));
    } finally {
      again.disabled = false;
    }
  });
}

async function oauthButtons() {
  const box = $("[data-oauth-providers]");
  let providers;
  try {
    providers = await api("GET", "auth/providers", { auth: false });
  } catch {
    providers = []; // not offered by this server: no buttons
  }
  // Says the answer is in, so "no button" means no provider rather than "not fetched yet".
  box.dataset.state = "loaded";
  if (!Array.isArray(providers)) return;
  for (const provider of providers) {
    if (!provider || typeof provider.id !== "string" || !/^[a-z0-9_-]{1,32}$/.test(provider.id)) continue;
    box.append(h("button", {
      type: "button", class: "secondary oauth-button", "data-testid": `oauth-${provider.id}`,
      onclick: async () => {
        try {
          const start = await api("POST", `auth/oauth/${provider.id}/start`, { body: {}, auth: false });
          sessionStorage.setItem("synctv.oauth.next", nextPath());
          const url = new URL(start.authorize_url);
          if (url.protocol === "https:" || url.protocol === "http:") location.assign(url.href);
        } catch (err) {
          showError(error, err.message);
        }
      },
    }, `Continue with ${provider.name || provider.id}`));
  }
}
oauthButtons();
