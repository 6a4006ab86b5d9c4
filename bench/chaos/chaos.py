"""Chaos benchmark orchestrator (bench/chaos/run): the production process set behind nginx, a
load of WebSocket clients (load.py), faults injected while it runs, then the figures.

Everything is on 127.0.0.1: a private redis-server, a TcpProxy (tests/tcpproxy.py) in front of the
machine's PostgreSQL with a scratch database, the Procfile's release step, 2 ``ws`` + 2 ``web``
nodes, a Celery worker and beat, nginx from deploy/nginx/synctv.conf.template. See README.md.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
import psycopg  # noqa: E402
import redis as redis_lib  # noqa: E402
import report  # noqa: E402

from tests.procs import PrivateRedis, free_port, procfile_command, production_env, write_front_config  # noqa: E402
from tests.tcpproxy import TcpProxy  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
PY = Path(os.environ.get("CHAOS_PYTHON", ROOT / ".venv" / "bin" / "python"))
NGINX = os.environ.get("NGINX", "/usr/sbin/nginx")
PG_ADMIN = os.environ.get("CHAOS_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_PORT = int(os.environ.get("CHAOS_PG_PORT", "5432"))


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


SOCKETS = env_int("SOCKETS", 2000)
ROOMS = env_int("ROOMS", 200)
DURATION_S = env_float("DURATION_S", 600)
CYCLES = env_int("CHAOS_CYCLES", 1)  # the faults' schedule, run this many times in a row
PG_CUT_S = env_float("PG_CUT_S", 30)
REDIS_DOWN_S = env_float("REDIS_DOWN_S", 5)
MIN_GAP_S = env_float("FAULT_GAP_S", 8)  # calm time between two faults at least
TAIL_S = env_float("TAIL_S", 15)  # calm time after the last fault before the end
DRAIN_S = env_float("WS_DRAIN_SECONDS", 45)  # the ws nodes' drain (the app's default is 20)
# How many moved sockets a second the node taking them gets (the app's default, 250, is what an idle
# node takes; under this load a node takes ~45-60: README, "With the balance").
RECONNECTS_PER_S = env_float("WS_RECONNECTS_PER_SECOND", 50)
BALANCE_WAIT_S = env_float("BALANCE_WAIT_S", 90)  # how long a restart waits for the nodes to even out


def log(text: str) -> None:
    line = f"[chaos {time.strftime('%H:%M:%S')}] {text}"
    print(line, file=sys.stderr, flush=True)


# --- processes ------------------------------------------------------------------------------------


class Proc:
    """One started command in its own process group, output to a log in out/."""

    def __init__(
        self, name: str, command: list[str] | str, env: dict, log_path: Path, port: int | None = None
    ):
        self.name, self.command, self.env, self.log_path, self.port = name, command, env, log_path, port
        self.proc: subprocess.Popen | None = None

    def start(self) -> Proc:
        argv = ["bash", "-c", f"exec {self.command}"] if isinstance(self.command, str) else self.command
        out = open(self.log_path, "ab")
        out.write(f"\n=== start {datetime.now(UTC).isoformat()} ===\n".encode())
        out.flush()
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        out.close()
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 20) -> None:
        if not self.alive():
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass


def children(pid: int) -> list[int]:
    kids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            kids.append(int(d.name))
    return kids


def tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children(p))
    return out


def vmrss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_s(pid: int) -> float:
    """utime + stime of one process, in seconds."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return sum(values) - values[3] - values[4], sum(values)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120]
    except OSError:
        return ""


# --- the run --------------------------------------------------------------------------------------


class Chaos:
    def __init__(self) -> None:
        self.stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.tmp = Path(tempfile.mkdtemp(prefix="synctv-chaos-"))
        self.logs = OUT / f"logs-{self.stamp}"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, Proc] = {}
        self.redis: PrivateRedis | None = None
        self.proxy: TcpProxy | None = None
        self.dbname = f"synctv_chaos_{secrets.token_hex(4)}"
        self.db_created = False
        self.faults: list[dict] = []
        self.readyz: list[list] = []  # [t, node, status, breaker database]
        self.poll_fast = threading.Event()
        self.stopping = threading.Event()
        self.load: subprocess.Popen | None = None
        self.load_lock = threading.Lock()
        self.rss: dict[str, dict] = {}
        self.notes: list[str] = []

    # --- set-up ---

    def setup(self) -> None:
        self.fingerprint = code_fingerprint()
        self.redis = PrivateRedis(self.tmp, maxclients=10000, start_timeout=10.0)
        self.redis.start()
        log(f"redis-server on :{self.redis.port}")
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.dbname}"')
        self.db_created = True
        self.proxy = TcpProxy(PG_PORT).start()
        log(f"database {self.dbname}, reached through TcpProxy :{self.proxy.port}")
        self.nginx_port = free_port()
        self.base = f"http://127.0.0.1:{self.nginx_port}"
        env = production_env(
            database_url=f"postgresql://postgres@127.0.0.1:{self.proxy.port}/{self.dbname}",
            redis_url=self.redis.url(0),
            broker_url=self.redis.url(1),
            port=8000,
            var_dir=str(self.tmp / "var"),
        )
        env.update(PUBLIC_URL=self.base, TRUSTED_PROXY_COUNT="1", PYTHONDONTWRITEBYTECODE="1")
        # A stopping ws node keeps its sockets while they move (docs/realtime.md, "Shutdown"): on
        # this machine a node under this load takes ~40-90 moved sockets a second, so 2,000 need
        # more than the 20 s default (README, "Rolling restarts").
        env["WS_DRAIN_SECONDS"] = str(DRAIN_S)
        env["WS_RECONNECTS_PER_SECOND"] = str(RECONNECTS_PER_S)
        # WEB_CONCURRENCY is for gunicorn only: uvicorn reads it too (as --workers), and a ws node
        # is one process (Procfile), so it is set for the web nodes alone (add()).
        env.pop("WEB_CONCURRENCY", None)
        self.env = env
        t0 = time.time()
        result = subprocess.run(
            ["bash", "-c", "python manage.py migrate --noinput && python manage.py generate_jwt_keys"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        (self.logs / "release.log").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            raise RuntimeError(f"release step failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
        log(f"release step done in {time.time() - t0:.0f}s")
        for i in (1, 2):
            self.add("ws", i)
            self.add("web", i)
        self.procs["worker"] = Proc(
            "worker", procfile_command("worker"), env, self.logs / "worker.log"
        ).start()
        self.procs["beat"] = Proc("beat", procfile_command("beat"), env, self.logs / "beat.log").start()
        for name in ("ws-1", "ws-2", "web-1", "web-2"):
            self.wait_healthy(self.procs[name], timeout=90)
        self.start_nginx()
        log(f"nginx on :{self.nginx_port}; every node healthy")

    def add(self, role: str, i: int) -> None:
        port = free_port()
        name = f"{role}-{i}"
        env = {**self.env, "PORT": str(port), "SYNCTV_NODE_ID": f"{name}-{port}"}
        if role == "web":
            env["WEB_CONCURRENCY"] = os.environ.get("WEB_CONCURRENCY", "2")
        self.procs[name] = Proc(name, procfile_command(role), env, self.logs / f"{name}.log", port).start()

    def wait_healthy(self, p: Proc, timeout: float, path: str = "/healthz") -> float:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not p.alive():
                raise RuntimeError(f"{p.name} exited: {p.log_path.read_text(errors='replace')[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{p.port}{path}", timeout=2).status_code == 200:
                    return time.time()
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{p.name} not healthy within {timeout}s")

    def start_nginx(self) -> None:
        prefix = self.tmp / "nginx"

        def servers(role: str, options: str) -> str:
            return "\n        ".join(
                f"server 127.0.0.1:{self.procs[f'{role}-{i}'].port} {options};" for i in (1, 2)
            )

        values = {
            "LISTEN_PORT": f"127.0.0.1:{self.nginx_port}",
            "WEB_SERVERS": servers("web", "max_fails=1 fail_timeout=2s"),
            # No passive marking for the ws nodes: nginx counts a WebSocket to a node that was
            # marked failed as its trial only when that socket ends, so a restarted node stays
            # "down" and, once the other one restarts too, every connect got 502 "no live
            # upstreams" (first quick runs). A refused connect on loopback costs nothing: try it.
            "WS_SERVERS": servers("ws", "max_fails=0"),
            "WORKER_PROCESSES": os.environ.get("NGINX_WORKERS", "1"),
        }
        conf = write_front_config(prefix, values)  # the load goes through the plain HTTP server
        (self.logs / "nginx.conf").write_text(conf.read_text())
        self.nginx_prefix = prefix
        cmd = [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"]
        self.procs["nginx"] = Proc("nginx", cmd, self.env, self.logs / "nginx.log", self.nginx_port).start()
        self.wait_healthy(self.procs["nginx"], timeout=20)

    # --- health polling ---

    def poll_readyz(self) -> None:
        client = httpx.Client(timeout=2)
        while not self.stopping.is_set():
            for name in ("web-1", "web-2", "ws-1", "ws-2"):
                p = self.procs.get(name)
                if p is None or not p.alive():
                    self.readyz.append([round(time.time(), 3), name, 0, "down"])
                    continue
                try:
                    r = client.get(f"http://127.0.0.1:{p.port}/readyz")
                    breaker = (r.json().get("breakers") or {}).get("database", "?")
                    self.readyz.append([round(time.time(), 3), name, r.status_code, breaker])
                except Exception as exc:
                    self.readyz.append([round(time.time(), 3), name, 0, type(exc).__name__])
            self.stopping.wait(0.25 if self.poll_fast.is_set() else 2.0)
        client.close()

    def all_ready_since(self, since: float) -> bool:
        latest: dict[str, list] = {}
        for row in self.readyz:
            if row[0] >= since:
                latest[row[1]] = row
        return len(latest) == 4 and all(r[2] == 200 for r in latest.values())

    def wait_all_ready(self, since: float, timeout: float) -> float | None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.all_ready_since(since):
                return time.time()
            time.sleep(0.1)
        return None

    # --- memory ---

    def snapshot_rss(self, label: str) -> None:
        snap = {}
        for name, p in self.procs.items():
            if not p.alive():
                continue
            pids = tree(p.pid)
            rows = [
                {"pid": q, "rss_kb": vmrss_kb(q), "cpu_s": round(cpu_s(q), 2), "cmd": cmdline(q)}
                for q in pids
            ]
            rows = [r for r in rows if r["rss_kb"] is not None]
            snap[name] = {
                "total_kb": sum(r["rss_kb"] for r in rows),
                "cpu_s": round(sum(r["cpu_s"] for r in rows), 1),
                "processes": rows,
            }
        if self.redis and self.redis.proc:
            snap["redis"] = {"total_kb": vmrss_kb(self.redis.proc.pid) or 0, "processes": []}
        if self.load is not None and self.load.poll() is None:
            snap["load-client"] = {"total_kb": vmrss_kb(self.load.pid) or 0, "processes": []}
        self.rss[label] = {"t": round(time.time(), 3), "machine_cpu": machine_cpu(), "roles": snap}

    # --- faults ---

    def tell(self, line: str) -> None:
        with self.load_lock:
            if self.load is not None and self.load.poll() is None:
                self.load.stdin.write(line + "\n")
                self.load.stdin.flush()

    def fault(self, name: str) -> dict:
        record = {"name": name, "start": round(time.time(), 3)}
        self.faults.append(record)
        self.tell(f"window {name} {record['start']}")
        log(f"fault {name}: start")
        return record

    def fault_end(self, record: dict) -> None:
        record["end"] = round(time.time(), 3)
        self.tell(f"window_end {record['name']} {record['end']}")
        log(f"fault {record['name']}: end after {record['end'] - record['start']:.1f}s")
        # Memory after each fault too: a high-water mark (more connections at once while sockets
        # move) shows as a step at a fault and no growth after; a leak keeps growing.
        self.snapshot_rss(f"after:{record['name']}")

    def outage(self, name: str, *, down, up, seconds: float, back_key: str, ready_within: float) -> None:
        """A dependency down for ``seconds`` (``down()``), then back (``up()``); the fault's record
        notes when it came back and when every node's /readyz answered 200 again."""
        rec = self.fault(name)
        self.poll_fast.set()
        down()
        time.sleep(seconds)
        up()
        rec[back_key] = round(time.time(), 3)
        self.fault_end(rec)
        t = self.wait_all_ready(rec["end"], ready_within)
        rec["all_readyz_200_after_s"] = round(t - rec["end"], 3) if t else None
        self.poll_fast.clear()

    def redis_restart(self) -> None:
        self.outage(
            "redis_restart",
            down=self.redis.kill,
            up=self.redis.start,
            seconds=REDIS_DOWN_S,
            back_key="redis_back",
            ready_within=30,
        )

    def pg_cut(self) -> None:
        self.outage(
            "pg_cut",
            down=self.proxy.cut,
            up=self.proxy.restore,
            seconds=PG_CUT_S,
            back_key="db_back",
            ready_within=60,
        )

    def ws_sockets(self, since: float = 0.0) -> dict[str, int]:
        """Sockets per live ws node, as each node reports them (apps/rooms/balance.py); with
        ``since``, only the nodes whose last report came after that time."""
        client = redis_lib.Redis.from_url(self.redis.url(0), decode_responses=True, socket_timeout=2)
        try:
            counts = {}
            for name in ("ws-1", "ws-2"):
                node = f"{name}-{self.procs[name].port}"
                key = f"cluster:sockets:{node}"
                # A report sets the key with a 15 s TTL (NODE_TTL_SECONDS): what is left dates it.
                written = time.time() - (15_000 - client.pttl(key)) / 1000
                if client.exists(f"cluster:node:ws:{node}") and written >= since:
                    counts[name] = int(client.get(key) or 0)
            return counts
        finally:
            client.close()

    def wait_even(self, timeout: float) -> float | None:
        """Seconds until the ws nodes hold an even share (within the balancer's slack: 10 % or 20
        sockets), as both report after this call, or None if not within ``timeout``."""
        t0 = time.time()
        while time.time() - t0 < timeout:
            counts = self.ws_sockets(since=t0)
            if len(counts) == 2:
                share = sum(counts.values()) / 2
                if max(counts.values()) - share <= max(20, 0.1 * share):
                    return round(time.time() - t0, 1)
            time.sleep(0.5)
        return None

    def restart_ws(self, name: str, rec: dict) -> None:
        p = self.procs[name]
        step = {"node": name, "held": self.ws_sockets().get(name), "sigterm": round(time.time(), 3)}
        p.signal(signal.SIGTERM)
        try:
            p.proc.wait(timeout=DRAIN_S + 20)  # the drain, then uvicorn's graceful 10 s
        except subprocess.TimeoutExpired:
            step["note"] = f"still running {DRAIN_S + 20:.0f} s after SIGTERM: SIGKILL"
            p.signal(signal.SIGKILL)
            p.proc.wait()
        step["exited"] = round(time.time(), 3)
        step["exit_code"] = p.proc.returncode
        p.start()
        self.wait_healthy(p, timeout=90)
        step["healthz"] = round(time.time(), 3)
        self.wait_healthy(p, timeout=60, path="/readyz")
        step["readyz"] = round(time.time(), 3)
        # As docs/operations.md asks of a rolling restart: the next node only once this one holds
        # its share again (the nodes even out by themselves), or after BALANCE_WAIT_S at most.
        step["even_after_s"] = self.wait_even(BALANCE_WAIT_S)
        rec.setdefault("steps", []).append(step)
        log(f"  {name} (held {step['held']} sockets): SIGTERM -> exit {step['exited'] - step['sigterm']:.1f}s "
            f"-> ready again {step['readyz'] - step['sigterm']:.1f}s -> even {step['even_after_s']} s later")  # fmt: skip

    def ws_sigterm(self) -> None:
        rec = self.fault("ws_sigterm")
        self.poll_fast.set()
        self.restart_ws("ws-1", rec)
        self.fault_end(rec)
        self.poll_fast.clear()

    def gunicorn_kill(self) -> None:
        p = self.procs["web-1"]
        workers = children(p.pid)
        if not workers:
            self.notes.append("gunicorn_worker_kill: web-1 has no worker to kill")
            return
        rec = self.fault("gunicorn_worker_kill")
        victim = workers[0]
        rec["killed_pid"] = victim
        os.kill(victim, signal.SIGKILL)
        deadline = time.time() + 60
        while time.time() < deadline:
            now_workers = children(p.pid)
            if victim not in now_workers and len(now_workers) >= len(workers):
                rec["respawned_pid"] = sorted(set(now_workers) - set(workers))
                break
            time.sleep(0.05)
        rec["respawn_s"] = round(time.time() - rec["start"], 3)
        self.fault_end(rec)

    def rolling_restart(self) -> None:
        rec = self.fault("rolling_restart")
        self.poll_fast.set()
        for name in ("ws-1", "ws-2"):
            self.restart_ws(name, rec)
        self.fault_end(rec)
        self.poll_fast.clear()

    # --- main ---

    def run(self) -> int:
        self.setup()
        threading.Thread(target=self.poll_readyz, daemon=True).start()
        self.snapshot_rss("boot")
        layout_out = self.tmp / "load.json"
        cmd = [
            str(PY), str(HERE / "load.py"), "--base", self.base, "--origin", self.base,
            "--sockets", str(SOCKETS), "--rooms", str(ROOMS), "--out", str(layout_out),
        ]  # fmt: skip
        for flag, var in (
            ("--chat-every", "CHAT_EVERY_S"), ("--playback-every", "PLAYBACK_EVERY_S"),
            ("--movie-every", "MOVIE_EVERY_S"), ("--read-every", "READ_EVERY_S"), ("--ping-every", "PING_EVERY_S"),
            ("--probe-rooms", "PROBE_ROOMS"), ("--probe-ms", "PROBE_MS"), ("--open-timeout", "OPEN_TIMEOUT_S"),
        ):  # fmt: skip
            if os.environ.get(var):
                cmd += [flag, os.environ[var]]
        log(f"load client: {SOCKETS} sockets over {ROOMS} rooms (registering users first)")
        self.load = subprocess.Popen(
            cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=open(self.logs / "load.log", "ab"), text=True, start_new_session=True,
        )  # fmt: skip
        t_ready = None
        for line in self.load.stdout:
            if line.startswith("READY"):
                t_ready = float(line.split()[1])
                log(f"load ready: {line.split()[2]} sockets connected")
                break
        if t_ready is None:
            raise RuntimeError(
                f"load client ended before READY: {(self.logs / 'load.log').read_text()[-3000:]}"
            )
        time.sleep(min(10, DURATION_S * 0.05))
        self.snapshot_rss("start")
        schedule = [
            (0.10, self.redis_restart),
            (0.22, self.pg_cut),
            (0.50, self.ws_sigterm),
            (0.62, self.gunicorn_kill),
            (0.70, self.rolling_restart),
        ]
        # CHAOS_CYCLES > 1 runs the same faults again, DURATION_S each, with an RSS snapshot at the
        # end of every cycle: memory a cycle leaves behind shows up as growth from one to the next.
        for cycle in range(CYCLES):
            base = t_ready + cycle * DURATION_S
            if cycle:
                time.sleep(max(0.0, base - time.time()))
                self.snapshot_rss(f"cycle:{cycle}")
            for fraction, action in schedule:
                at = max(base + fraction * DURATION_S, time.time() + (MIN_GAP_S if self.faults else 0))
                time.sleep(max(0.0, at - time.time()))
                action()
                if self.load.poll() is not None:
                    raise RuntimeError("load client died during the run (see load.log)")
        end = max(t_ready + CYCLES * DURATION_S, time.time() + TAIL_S)
        while time.time() < end:
            time.sleep(min(5.0, end - time.time()))
            if self.load.poll() is not None:
                raise RuntimeError("load client died during the run (see load.log)")
        self.snapshot_rss("end")
        self.tell("stop")
        try:
            self.load.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.load.kill()
            raise RuntimeError("load client did not finish within 120 s of stop") from None
        load = json.loads(layout_out.read_text())
        self.stopping.set()
        verify = self.verify(load["acked"])
        result = {
            "started_utc": self.stamp,
            "finished_utc": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
            "machine": machine(),
            "code_fingerprint": self.fingerprint,
            "config": {
                "sockets": SOCKETS,
                "rooms": ROOMS,
                "duration_s": DURATION_S,
                "pg_cut_s": PG_CUT_S,
                "redis_down_s": REDIS_DOWN_S,
                "ws_drain_s": DRAIN_S,
                "ws_reconnects_per_s": RECONNECTS_PER_S,
                "load": load["config"],
                "database": self.dbname,
                "nginx_port": self.nginx_port,
                "nodes": {n: p.port for n, p in self.procs.items() if p.port},
            },
            "faults": self.faults,
            "readyz": self.readyz,
            "rss": self.rss,
            "verify": verify,
            "notes": self.notes,
        }
        figures = report.analyse(result, load)
        result["figures"] = figures
        a, b = self.rss["start"]["machine_cpu"], self.rss["end"]["machine_cpu"]
        figures["machine_busy_pct_start_to_end"] = round(100 * (b[0] - a[0]) / max(1, b[1] - a[1]), 1)
        keys = ("t_ready", "t_stop", "connect_s", "connected_at_ready", "frames_received")
        result["load_summary"] = {k: load[k] for k in (*keys, "server_shutdown_asked", "client_cpu_s")}
        path = OUT / f"chaos-{self.stamp}.json"
        path.write_text(json.dumps(result, indent=1))
        raw = self.logs / "load-raw.json"
        raw.write_text(json.dumps(load))
        summary = report.summary(result)
        (OUT / "summary.md").write_text(summary)
        print(summary)
        log(f"JSON: {path.relative_to(ROOT)}; raw client records: {raw.relative_to(ROOT)}")
        return 0

    def verify(self, acked: dict) -> dict:
        """Read back every acknowledged write from PostgreSQL (directly, not through the proxy)."""
        dsn = PG_ADMIN.rsplit("/", 1)[0] + f"/{self.dbname}"
        with psycopg.connect(dsn) as conn:
            chats = sorted(set(acked["chats"]))
            found = {
                r[0] for r in conn.execute("SELECT id FROM rooms_chatmessage WHERE id = ANY(%s)", (chats,))
            }
            movies = sorted(set(acked["movies"]))
            found_m = {r[0] for r in conn.execute("SELECT id FROM rooms_movie WHERE id = ANY(%s)", (movies,))}
            audited = {
                (r[0], int(r[1]))
                for r in conn.execute(
                    "SELECT resource_id, details->>'version' FROM audit_auditevent "
                    "WHERE action = 'playback.update' AND details ? 'version'"
                )
            }
            final = dict(conn.execute("SELECT room_id, version FROM rooms_playbackstate").fetchall())
        pb = {(room, int(v)) for room, v, _via in acked["playback"]}
        max_acked: dict[str, int] = {}
        for room, v in pb:
            max_acked[room] = max(max_acked.get(room, 0), v)
        went_back = {
            room: [v, final.get(room)] for room, v in max_acked.items() if (final.get(room) or 0) < v
        }
        missing_pb = sorted(pb - audited)
        return {
            "chats_acked": len(chats),
            "chats_lost": sorted(set(chats) - found),
            "playback_acked": len(pb),
            "playback_lost": [list(x) for x in missing_pb],
            "playback_final_below_acked": went_back,
            "movies_acked": len(movies),
            "movies_lost": sorted(set(movies) - found_m),
        }

    def cleanup(self) -> None:
        self.stopping.set()
        if self.load is not None and self.load.poll() is None:
            with self.load_lock:
                try:
                    self.load.stdin.write("stop\n")
                    self.load.stdin.flush()
                except Exception:
                    pass
            try:
                self.load.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.load.pid, signal.SIGKILL)
        for name in ("nginx", "ws-1", "ws-2", "web-1", "web-2", "worker", "beat"):
            p = self.procs.get(name)
            if p is not None:
                try:
                    p.stop()
                except Exception as exc:
                    log(f"stopping {name}: {exc}")
        prefix = getattr(self, "nginx_prefix", None)
        if prefix is not None:
            for f in ("error.log", "access.log"):
                src = prefix / "logs" / f
                if src.exists():
                    shutil.copy(src, self.logs / f"nginx-{f}")
        if self.proxy is not None:
            self.proxy.stop()
        if self.redis is not None:
            self.redis.kill()
        if self.db_created:
            try:
                with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
            except Exception as exc:
                log(f"could not drop {self.dbname}: {exc}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        log(f"stopped everything; logs in {self.logs.relative_to(ROOT)}")


def code_fingerprint() -> str:
    """A hash of the app's code as it ran (apps/, synctv/, Procfile): the tree may change between
    runs while someone works on it, and this names what was measured without asking git."""
    import hashlib

    h = hashlib.sha256()
    files = sorted([*ROOT.glob("apps/**/*.py"), *ROOT.glob("synctv/**/*.py"), ROOT / "Procfile"])
    for f in files:
        if "/tests/" in str(f) or "__pycache__" in str(f):
            continue
        h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


def machine() -> dict:
    model = ""
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name:"):
            model = line.split(":", 1)[1].strip()
    return {"cpu_model": model, "cpus": os.cpu_count(), "kernel": os.uname().release}


def main() -> int:
    chaos = Chaos()

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        return chaos.run()
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except Exception as exc:
        log(f"FAILED: {type(exc).__name__}: {exc}")
        return 1
    finally:
        chaos.cleanup()


if __name__ == "__main__":
    sys.exit(main())
