// The "service degraded" banner (docs/security.md, "When PostgreSQL is down"). Shown when the API
// answers 503 `service_degraded`, or a room socket gets that error or is refused for it; while it
// shows, /readyz is asked every few seconds and the banner goes once it answers 200. Standalone
// (no imports): api.js, which every page loads, reports to it.
const CHECK_MS = 3000;
let timer = null;

function banner() {
  return document.querySelector("[data-degraded]");
}

export function serviceDegraded() {
  const el = banner();
  if (!el) return;
  el.hidden = false;
  if (timer === null) timer = setInterval(checkRecovered, CHECK_MS);
}

async function checkRecovered() {
  let ready = false;
  try {
    const response = await fetch("/readyz", { credentials: "omit", cache: "no-store" });
    ready = response.ok;
  } catch { /* still down, or offline */ }
  if (!ready) return;
  const el = banner();
  if (el) el.hidden = true;
  clearInterval(timer);
  timer = null;
}
