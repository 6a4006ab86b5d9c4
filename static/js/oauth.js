// The OAuth provider sends the browser back here with ?code=&state=; the server checks the state
// and the PKCE verifier it kept and answers with our own token pair.
import { api, tokens } from "./api.js";
import { $, initAccountNav, safeNext, showError } from "./common.js";

initAccountNav();
const provider = document.body.dataset.provider;
const params = new URLSearchParams(location.search);
const error = $("[data-testid=auth-error]");

(async () => {
  const code = params.get("code"), state = params.get("state");
  if (!code || !state) {
    showError(error, params.get("error_description") || params.get("error") || "The provider did not sign you in.");
    return;
  }
  try {
    const result = await api("POST", `auth/oauth/${provider}/callback`, { body: { code, state }, auth: false });
    tokens.save(result);
    const next = safeNext(sessionStorage.getItem("synctv.oauth.next"));
    sessionStorage.removeItem("synctv.oauth.next");
    location.replace(next);
  } catch (err) {
    showError(error, err.message);
  }
})();
