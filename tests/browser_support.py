"""Helpers for the browser tests (tests/test_browser.py): a real server, the API, Chromium pages
and the sync measurements.

The server is started for real (``manage.py migrate`` then uvicorn on ``synctv.asgi:application``)
on the embedded default with its own SQLite under a temporary ``SYNCTV_VAR_DIR``. Browsers are
Debian's ``chromium`` driven by Playwright (``executable_path``; Playwright's own browser
downloads are not used).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import time
from collections import deque
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.procs import ROOT, base_env, free_port, procfile_command, running, wait_http, wait_until
from tests.procs import run as run_command
from tests.secretscan import console_mail_removed, find_secrets

CHROMIUM = os.environ.get("SYNCTV_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Tests play without a click first; people get the page's muted start + "Tap to unmute".
    "--autoplay-policy=no-user-gesture-required",
    # Two pages play side by side: neither may be throttled as a background page.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]
PASSWORD = "Corr3ct-horse"
ARTIFACTS = ROOT / "artifacts"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def missing_tools() -> list[str]:
    missing = []
    if not Path(CHROMIUM).exists():
        missing.append(f"chromium ({CHROMIUM})")
    if not shutil.which("ffmpeg"):
        missing.append("ffmpeg")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip)")
    return missing


def require_tools() -> None:
    """Skip the calling browser module without its tools, unless CI is set: then fail."""
    import pytest

    missing = missing_tools()
    if missing:
        message = f"browser tests need {', '.join(missing)} (scripts/install-system-packages)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@contextmanager
def launched_chromium() -> Iterator[Any]:
    """Debian's Chromium through Playwright (its executable, never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


# --- the server ------------------------------------------------------------------------------------


class Server:
    """One uvicorn process on the embedded default; ``restart()`` stops it with SIGTERM (so pages
    get ``server_shutdown``) and starts it again on the same port and database."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tmp / "server.log"
        origins = f"http://127.0.0.1:{self.port},http://localhost:{self.port}"
        self.env = base_env(
            SYNCTV_VAR_DIR=str(tmp / "var"),
            RATELIMIT_ENABLE="false",
            CORS_ALLOWED_ORIGINS=origins,
            ALLOWED_HOSTS="127.0.0.1,localhost",
            PUBLIC_URL=self.base,
            LOG_LEVEL="WARNING",
        )
        self._stack = ExitStack()
        self.proc: subprocess.Popen | None = None

    def migrate(self) -> None:
        done = run_command("python manage.py migrate --noinput -v0", env=self.env, timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr

    def start(self) -> None:
        command = (
            f"uvicorn synctv.asgi:application --host 127.0.0.1 --port {self.port} "
            "--timeout-graceful-shutdown 5 --log-level warning"
        )
        self._stack = ExitStack()
        self.proc = self._stack.enter_context(running(command, env=self.env, log=self.log))
        wait_http(f"{self.base}/healthz", proc=self.proc, log=self.log, timeout=60)

    def stop(self) -> None:
        ran = self.proc is not None
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        self._stack.close()
        self.proc = None
        if ran:  # each start writes the log afresh: read it before the next one does
            assert_log_clean(self.log)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def add_rtmp_settings(self) -> None:
        """Free loopback ports for an `rtmp` process beside this server (RTMP ingest, HLS, its
        control endpoint), and the settings that point the two at each other. Before ``start``."""
        rtmp_port, hls_port = free_port(), free_port()
        self.env.update(
            RTMP_PORT=str(rtmp_port),
            HLS_PORT=str(hls_port),
            RTMP_CONTROL_PORT=str(free_port()),
            RTMP_URL=f"rtmp://127.0.0.1:{rtmp_port}/live",
            RTMP_CALLBACK_URL=self.base,
            HLS_PUBLIC_URL=f"http://127.0.0.1:{hls_port}",
        )

    def start_rtmp(self, stack: ExitStack, log: Path) -> subprocess.Popen:
        """The Procfile's `rtmp` process with this server's environment (``add_rtmp_settings``),
        stopped with ``stack``; returns once its control endpoint answers."""
        proc = stack.enter_context(running(procfile_command("rtmp"), env=self.env, log=log))
        control = f"http://127.0.0.1:{self.env['RTMP_CONTROL_PORT']}/ping"
        status = wait_http(control, proc=proc, log=log, timeout=30).status_code
        assert status == 204, f"the rtmp process's control /ping answered {status}"
        return proc


def assert_log_clean(log: Path) -> None:
    """No token, key or secret in a server's log (tests/secretscan.py), leaving out the mails the
    embedded default's console backend printed (that is what it is for)."""
    if not log.exists():
        return
    found = find_secrets(console_mail_removed(log.read_text(errors="replace").splitlines()))
    if found:
        shown = "\n".join(f"{what}: {line[:300]}" for what, line in found[:20])
        raise AssertionError(f"{len(found)} line(s) of {log} hold a secret:\n{shown}")


@contextmanager
def serving(tmp: Path, **env: str) -> Iterator[Server]:
    """A migrated, started :class:`Server` in ``tmp`` (``env`` added to its environment) for the
    length of the block."""
    server = Server(tmp)
    server.env.update(env)
    server.migrate()
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- the API ---------------------------------------------------------------------------------------


@dataclass
class Account:
    username: str
    id: str
    access: str
    refresh: str
    user: dict


class Api:
    def __init__(self, base: str) -> None:
        self.client = httpx.Client(base_url=f"{base}/api/v1/", timeout=15)

    def call(self, method: str, path: str, who: Account | None = None, body: Any = None, expect=None):
        headers = {"Authorization": f"Bearer {who.access}"} if who else {}
        r = self.client.request(method, path, json=body, headers=headers)
        if expect is not None:
            wanted = expect if isinstance(expect, tuple) else (expect,)
            assert r.status_code in wanted, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.content else None

    def register(self, username: str) -> Account:
        body = self.call(
            "POST", "auth/register", body={"username": username, "password": PASSWORD}, expect=201
        )
        return Account(username, body["user"]["id"], body["access"], body["refresh"], body["user"])

    def login(self, username: str) -> Account:
        body = self.call("POST", "auth/login", body={"username": username, "password": PASSWORD}, expect=200)
        return Account(username, body["user"]["id"], body["access"], body["refresh"], body["user"])

    def create_room(self, who: Account, name: str, **settings) -> dict:
        body: dict[str, Any] = {"name": name}
        password = settings.pop("password", None)
        if password:
            body["password"] = password
        if settings:
            body["settings"] = settings
        return self.call("POST", "rooms", who, body, expect=201)

    def join(self, who: Account, room_id: str, **body) -> dict:
        return self.call("POST", f"rooms/{room_id}/join", who, body, expect=(200, 201))

    def playback(self, who: Account, room_id: str) -> dict:
        return self.call("GET", f"rooms/{room_id}/playback", who, expect=200)

    def set_playback(self, who: Account, room_id: str, **change) -> dict:
        """PUT playback: put the room in a known state whatever an earlier test left."""
        return self.call("PUT", f"rooms/{room_id}/playback", who, change, expect=200)

    def grant(self, creator: Account, room_id: str, member: Account, added: int, removed: int = 0) -> dict:
        return self.call(
            "PATCH",
            f"rooms/{room_id}/members/{member.id}",
            creator,
            {"permissions_added": added, "permissions_removed": removed},
            expect=200,
        )


# --- pages -----------------------------------------------------------------------------------------


@dataclass
class Watcher:
    """One browser context + page, with what its console said."""

    name: str
    context: Any
    page: Any
    problems: list[str] = field(default_factory=list)
    # The page's recent console lines, failed requests and 4xx/5xx answers: evidence when a test fails.
    recent: deque = field(default_factory=lambda: deque(maxlen=200))

    def close(self) -> None:
        self.context.close()


def open_page(browser, name: str, *, viewport=DESKTOP, account: Account | None = None) -> Watcher:
    """A fresh context (its own localStorage) logged in as ``account`` (tokens as the login page
    stores them), collecting page errors and CSP violations."""
    context = browser.new_context(viewport=viewport, device_scale_factor=1)
    if account is not None:
        items = {
            "synctv.access": account.access,
            "synctv.refresh": account.refresh,
            "synctv.user": json.dumps(account.user),
        }
        script = "".join(f"localStorage.setItem({json.dumps(k)}, {json.dumps(v)});" for k, v in items.items())
        context.add_init_script(f"if (!localStorage.getItem('synctv.access')) {{ {script} }}")
    page = context.new_page()
    watcher = Watcher(name, context, page)

    def on_console(message) -> None:
        text = message.text
        if message.type == "error" and (
            "Content Security Policy" in text or "Content-Security-Policy" in text or "Uncaught" in text
        ):
            watcher.problems.append(f"console: {text}")

    def on_response(response) -> None:
        if response.status >= 400:
            watcher.recent.append(
                f"{stamp()} http {response.status} {response.request.method} {response.url}"
            )

    def stamp() -> str:
        return time.strftime("%H:%M:%S") + f".{int(time.time() * 1000) % 1000:03d}"

    page.on("console", on_console)
    page.on("console", lambda m: watcher.recent.append(f"{stamp()} console.{m.type}: {m.text}"))
    page.on("pageerror", lambda exc: watcher.problems.append(f"pageerror: {exc}"))
    page.on(
        "requestfailed", lambda r: watcher.recent.append(f"{stamp()} failed {r.method} {r.url}: {r.failure}")
    )
    page.on("response", on_response)
    page.set_default_timeout(10_000)
    return watcher


PAGE_STATE = """() => ({
  url: location.href,
  connection: document.querySelector('[data-testid=connection-state]')?.textContent,
  playlist: [...document.querySelectorAll('[data-testid=playlist-item]')].map((el) => el.textContent),
  dragging: document.querySelectorAll('.dragging').length,
  toasts: document.querySelector('[data-toasts]')?.textContent,
  player: (() => { const v = document.querySelector('[data-testid=player]');
                   return v && {src: v.src.slice(0, 80), paused: v.paused, time: v.currentTime, ready: v.readyState}; })(),
  tokens: ['synctv.access', 'synctv.refresh'].filter((k) => localStorage.getItem(k)),
})"""


def save_evidence(test_name: str, watchers: list[Watcher], server: Server | None) -> str:
    """Screenshots, page state, each page's recent console and failed requests, and the server
    log's tail, under artifacts/failures/<test>/; returns a summary to print."""
    folder = ARTIFACTS / "failures" / test_name
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"evidence in {folder}"]
    for watcher in watchers:
        try:
            watcher.page.screenshot(path=str(folder / f"{watcher.name}.png"), full_page=True, timeout=5_000)
            state = watcher.page.evaluate(PAGE_STATE)
        except Exception as exc:  # a closed or hung page is evidence too
            state = f"unreadable: {exc}"
        lines.append(f"page {watcher.name}: {json.dumps(state)}")
        lines += [f"  {line}" for line in list(watcher.recent)[-30:]]
        (folder / f"{watcher.name}.log").write_text("\n".join(watcher.recent) + "\n")
    if server is not None:
        tail = server.log_tail(20_000)
        (folder / "server.log").write_text(tail)
        lines.append("server log (tail):")
        lines += [f"  {line}" for line in tail.splitlines()[-30:]]
    return "\n".join(lines)


def wait_connected(page, timeout: float = 15_000) -> None:
    page.wait_for_function(
        "() => document.querySelector('[data-testid=connection-state]')?.textContent === 'connected'",
        timeout=timeout,
    )


def html5_drag(page, source, target, *, dx: float = 20, dy: float = 3) -> None:
    """Drag ``source`` onto ``target`` (at ``dx``, ``dy`` inside it) with the HTML5 drag events a
    browser fires, in order, sharing one DataTransfer. Playwright's mouse-driven ``drag_to``
    decides whether a drag started from a timer after the first mouse move; on a loaded machine
    it sometimes left the drag started and never dropped (the item greyed out, no drop event),
    which no longer wait would fix. The page's own handlers are what the tests check."""
    # The list may be re-rendering (another member's change): the target has no box while its
    # node is being replaced. Measure it once it is there again.
    target.wait_for(state="visible")
    box = wait_until(target.bounding_box, timeout=10, message="the drop target on screen")
    data = page.evaluate_handle("() => new DataTransfer()")
    at = {"dataTransfer": data, "clientX": box["x"] + dx, "clientY": box["y"] + dy}
    source.dispatch_event("dragstart", {"dataTransfer": data})
    for kind in ("dragenter", "dragover", "drop"):
        target.dispatch_event(kind, at)
    source.dispatch_event("dragend", {"dataTransfer": data})


def playing_offset(a, b) -> float:
    """Seconds between two playing pages' positions at one instant. Each page reports its
    position with its own reading of Date.now() (one machine clock for every page), and both are
    projected to the same instant at rate 1, so the time the test takes to ask the two pages one
    after the other (a second on a loaded machine) does not count."""
    script = "() => [document.querySelector('[data-testid=player]').currentTime, Date.now() / 1000]"
    (ta, wa), (tb, wb) = a.evaluate(script), b.evaluate(script)
    return abs((ta - wa) - (tb - wb))


def current_time(page) -> float:
    return page.evaluate("document.querySelector('[data-testid=player]').currentTime")


def wait_playing(page, *, at_least: float = 0.0, timeout: float = 15_000) -> None:
    page.wait_for_function(
        """(min) => { const v = document.querySelector('[data-testid=player]');
             return v && !v.paused && v.readyState >= 3 && v.currentTime >= min; }""",
        arg=at_least,
        timeout=timeout,
    )


def seek_with_ui(page, seconds: float) -> float:
    """Move the seek slider as a person does (input while dragging, change on release); returns
    the page's Date.now() at the release."""
    return page.evaluate(
        """(to) => { const r = document.querySelector('[data-testid=seek]');
             r.value = String(to);
             r.dispatchEvent(new Event('input', {bubbles: true}));
             const at = Date.now();
             r.dispatchEvent(new Event('change', {bubbles: true}));
             return at; }""",
        seconds,
    )


# --- measuring sync --------------------------------------------------------------------------------

SAMPLER_START = """(interval) => {
  const v = document.querySelector('[data-testid=player]');
  window.__syncSamples = [];
  clearInterval(window.__syncSampler);
  window.__syncSampler = setInterval(() => {
    window.__syncSamples.push([Date.now(), v.currentTime, v.paused || v.seeking || v.readyState < 3 ? 0 : 1]);
  }, interval);
}"""
SAMPLER_STOP = "() => { clearInterval(window.__syncSampler); return window.__syncSamples; }"


def start_sampling(pages, interval_ms: int = 20) -> None:
    for page in pages:
        page.evaluate(SAMPLER_START, interval_ms)


def stop_sampling(pages) -> list[list[tuple[float, float, int]]]:
    return [[tuple(s) for s in page.evaluate(SAMPLER_STOP)] for page in pages]


def interpolate(samples, t: float) -> float | None:
    """Position of a player at wall-clock ``t`` (ms) from its two samples around ``t``, if both
    show it playing normally and no seek lies between them."""
    lo, hi = 0, len(samples) - 1
    if not samples or t < samples[0][0] or t > samples[-1][0]:
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if samples[mid][0] <= t:
            lo = mid
        else:
            hi = mid
    (t1, c1, ok1), (t2, c2, ok2) = samples[lo], samples[hi]
    if not (ok1 and ok2) or t2 - t1 > 120 or c2 < c1 or (c2 - c1) * 1000 > (t2 - t1) * 1.5 + 5:
        return None
    if t2 == t1:
        return c1
    return c1 + (c2 - c1) * (t - t1) / (t2 - t1)


def room_position(state: dict, t_ms: float) -> float:
    """The room's position at wall-clock ``t_ms`` from a playback state (server on this machine)."""
    if not state["playing"]:
        return state["position"]
    return state["position"] + (t_ms - state["server_time_ms"]) / 1000 * state["rate"]


def offsets(a, b, state: dict | None = None) -> dict[str, list[float]]:
    """|A - B| (ms) at each of A's samples, and each player against the room's timeline."""
    between, a_room, b_room = [], [], []
    for t, c, ok in a:
        if not ok:
            continue
        other = interpolate(b, t)
        if other is None:
            continue
        between.append(abs(c - other) * 1000)
        if state is not None:
            a_room.append(abs(c - room_position(state, t)) * 1000)
            b_room.append(abs(other - room_position(state, t)) * 1000)
    return {"between": between, "a_room": a_room, "b_room": b_room}


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    low = int(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values) if values else float("nan"),
        "mean": statistics.fmean(values) if values else float("nan"),
    }


def converged_after(a, b, state: dict, since_ms: float, *, within_ms: float = 100, hold_ms: float = 500):
    """Milliseconds from ``since_ms`` until both players are within ``within_ms`` of each other and
    of the room, and stay so for ``hold_ms``; None if never."""
    candidates = [t for t, _c, ok in a if ok and t >= since_ms]
    start = None
    for t in candidates:
        ca = interpolate(a, t)
        cb = interpolate(b, t)
        good = (
            ca is not None
            and cb is not None
            and abs(ca - cb) * 1000 <= within_ms
            and abs(ca - room_position(state, t)) * 1000 <= within_ms
            and abs(cb - room_position(state, t)) * 1000 <= within_ms
        )
        if good and start is None:
            start = t
        elif not good:
            start = None
        if start is not None and t - start >= hold_ms:
            return start - since_ms
    return None


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    version = subprocess.run(
        [CHROMIUM, "--version"], capture_output=True, text=True, timeout=30
    ).stdout.strip()
    return f"{cpu}, {os.cpu_count()} CPUs; {version or 'chromium'}"


def save_json(name: str, data: Any) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    path.write_text(json.dumps(data, indent=2))
    return path
