"""The Procfile processes, started for real against PostgreSQL, Redis and a Celery broker,
with production settings (from the dev venv, and from a venv holding requirements.txt alone);
and the README's run command on a clean clone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import httpx
import psycopg
import pytest
from django.conf import settings

from tests.procs import (
    ROOT,
    VENV_BIN,
    account_round_trip,
    base_env,
    free_port,
    procfile_command,
    production_env,
    run,
    running,
    wait_http,
)

pytestmark = [pytest.mark.slow]


def _admin_dsn(dbname: str = "postgres") -> str:
    db = settings.DATABASES["default"]
    user = db.get("USER") or "postgres"
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgresql://{user}@{host}:{port}/{dbname}"


@pytest.fixture
def scratch_database():
    """A real, empty PostgreSQL database for processes started outside pytest's test DB."""
    name = f"synctv_proc_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_admin_dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield _admin_dsn(name)
    with psycopg.connect(_admin_dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def prod_env(scratch_database, tmp_path):
    redis_base = settings.REDIS_URL.rsplit("/", 1)[0]
    env = production_env(
        database_url=scratch_database,
        redis_url=f"{redis_base}/12",
        broker_url=f"{redis_base}/11",
        port=free_port(),
        var_dir=str(tmp_path / "var"),
    )
    result = run(procfile_command("release"), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return env


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.parametrize("process", ["web", "ws"])
def test_procfile_server_serves_accounts_in_production(process, prod_env, tmp_path):
    log = tmp_path / f"{process}.log"
    base = f"http://127.0.0.1:{prod_env['PORT']}"
    # WEB_CONCURRENCY is gunicorn's (web); uvicorn reads it too, so the ws line pins one process.
    env = {**prod_env, "WEB_CONCURRENCY": "3"}
    with running(procfile_command(process), env=env, log=log) as proc:
        r = wait_http(f"{base}/healthz", proc=proc, log=log, timeout=60)
        assert r.status_code == 200
        workers = _children(proc.pid)
        assert len(workers) == (3 if process == "web" else 0), workers
        r = httpx.get(f"{base}/readyz", timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["checks"]["redis"]["ok"] is True
        me = account_round_trip(base)
        assert me["username"] == "alice"
        # Production: no debug pages, API errors keep the API format.
        r = httpx.get(f"{base}/api/v1/no-such-thing", timeout=10)
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "not_found"
        # Moderators' admin renders with its static files (collected by `release`).
        r = httpx.get(f"{base}/admin/login/", timeout=10)
        assert r.status_code == 200 and "csrfmiddlewaretoken" in r.text
        css = httpx.get(f"{base}/static/admin/css/base.css", timeout=10)
        assert css.status_code == 200


@pytest.mark.postgres
@pytest.mark.redis
def test_celery_worker_runs_the_session_purge_from_the_broker(prod_env, tmp_path):
    """A real worker consumes a task sent through the Redis broker and changes the database."""
    dsn = prod_env["DATABASE_URL"]
    # An account with one long-dead session, made through the app in the scratch database.
    setup = run(
        'python manage.py shell -c "'
        "from apps.accounts.tests.factories import make_user;"
        "from apps.accounts.models import AuthSession;"
        "from django.utils import timezone; from datetime import timedelta;"
        "u,_=make_user('carol');"
        'AuthSession.objects.filter(user=u).update(expires_at=timezone.now()-timedelta(days=30))"',
        env=prod_env,
    )
    assert setup.returncode == 0, setup.stdout + setup.stderr

    def dead_sessions() -> int:
        with psycopg.connect(dsn) as conn:
            return conn.execute(
                "SELECT count(*) FROM accounts_authsession WHERE expires_at < now() - interval '7 days'"
            ).fetchone()[0]

    assert dead_sessions() == 1
    log = tmp_path / "worker.log"
    with running(procfile_command("worker"), env=prod_env, log=log) as proc:
        send = run(
            'python -c "import django,os;django.setup();'
            'from apps.accounts.tasks import purge_expired_sessions as t;t.delay()"',
            env={**prod_env, "DJANGO_SETTINGS_MODULE": "synctv.settings"},
        )
        assert send.returncode == 0, send.stderr
        deadline = time.monotonic() + 60
        while dead_sessions() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
    assert dead_sessions() == 0, log.read_text()[-3000:]


@pytest.mark.redis
def test_celery_beat_starts_with_the_schedule(prod_env, tmp_path):
    log = tmp_path / "beat.log"
    with running(procfile_command("beat") + " --loglevel DEBUG", env=prod_env, log=log) as proc:
        deadline = time.monotonic() + 30
        while "purge-expired-auth-sessions" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
    assert "purge-expired-auth-sessions" in log.read_text()


def _wait_log(text: str, *, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        assert proc.poll() is None, f"exited with {proc.returncode}:\n{log.read_text()[-4000:]}"
        assert time.monotonic() < deadline, f"no {text!r} within {timeout}s:\n{log.read_text()[-4000:]}"
        time.sleep(0.3)


def _venv_with_runtime_requirements(folder: Path) -> Path:
    """A new venv holding requirements.txt alone, what production installs (from pip's cache
    and local wheels: about 20 s)."""
    made = run(
        f"{sys.executable} -m venv {folder} && {folder}/bin/python -m pip install -q -r requirements.txt",
        env=base_env(),
        timeout=300,
    )
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    return folder / "bin"


@pytest.mark.postgres
@pytest.mark.redis
def test_procfile_processes_start_from_runtime_requirements_alone(scratch_database, tmp_path):
    """The dev requirements bring packages the runtime ones do not (pytest brings `packaging`,
    which kombu's Redis transport imports), so the dev venv cannot prove that production's
    install works: every Procfile process starts here from a venv with requirements.txt alone,
    on its own command line, against PostgreSQL and the Redis broker."""
    bin_dir = _venv_with_runtime_requirements(tmp_path / "venv")
    redis_base = settings.REDIS_URL.rsplit("/", 1)[0]
    ports = {"web": free_port(), "ws": free_port()}
    env = production_env(
        database_url=scratch_database,
        redis_url=f"{redis_base}/12",
        broker_url=f"{redis_base}/11",
        port=ports["web"],
        var_dir=str(tmp_path / "var"),
    )
    dev_path = [p for p in env["PATH"].split(os.pathsep) if Path(p) != VENV_BIN]
    env.update(PATH=os.pathsep.join([str(bin_dir), *dev_path]), VIRTUAL_ENV=str(bin_dir.parent))
    for tool in ("python", "gunicorn", "uvicorn", "celery"):
        assert (bin_dir / tool).exists(), tool
    release = run(procfile_command("release"), env=env, timeout=180)
    assert release.returncode == 0, release.stdout[-3000:] + release.stderr[-3000:]

    with ExitStack() as stack:
        procs = {}
        for name in ("web", "ws", "worker", "beat", "relay"):
            log = tmp_path / f"{name}.log"
            proc_env = {**env, "PORT": str(ports.get(name, ports["web"]))}
            procs[name] = (stack.enter_context(running(procfile_command(name), env=proc_env, log=log)), log)
        for name, port in ports.items():
            proc, log = procs[name]
            base = f"http://127.0.0.1:{port}"
            assert wait_http(f"{base}/healthz", proc=proc, log=log, timeout=90).status_code == 200
            r = httpx.get(f"{base}/readyz", timeout=10)
            assert r.status_code == 200, f"{name}: {r.text}"
        proc, log = procs["worker"]
        _wait_log(" ready.", proc=proc, log=log, timeout=90)
        ping = run("celery -A synctv inspect ping --timeout 5", env=env, timeout=60)
        assert ping.returncode == 0 and "pong" in ping.stdout, (
            ping.stdout + ping.stderr + log.read_text()[-3000:]
        )
        proc, log = procs["beat"]
        _wait_log("beat: Starting...", proc=proc, log=log, timeout=60)
        proc, log = procs["relay"]  # joins the ring only with an `rtmp` process, which is not here
        _wait_log("joins the ring once the RTMP server", proc=proc, log=log, timeout=60)


def test_production_refuses_to_start_without_secrets():
    env = base_env(SYNCTV_ENV="production")
    for name in ("DJANGO_SECRET_KEY", "SYNCTV_ENCRYPTION_KEY"):
        env.pop(name, None)
    result = run("python manage.py check", env=env)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


@pytest.mark.skipif(
    subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True).returncode != 0,
    reason="needs a git checkout",
)
def test_readme_run_command_on_a_clean_clone(tmp_path):
    """`scripts/run` in a fresh clone (its own new venv, nothing configured) serves HTTP and the
    accounts round trip on the embedded default."""
    clone = tmp_path / "clone"
    result = subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    port = free_port()
    env = base_env(PORT=str(port))
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if "/.venv/" not in p + "/")
    log = tmp_path / "run.log"
    with running("scripts/run", env=env, cwd=clone, log=log) as proc:
        r = wait_http(f"http://127.0.0.1:{port}/healthz", proc=proc, log=log, timeout=600)
        assert r.status_code == 200
        me = account_round_trip(f"http://127.0.0.1:{port}")
        assert me["role"] == "user"
    assert (clone / ".venv" / "bin" / "python").exists()
    assert (clone / "var" / "synctv.sqlite3").exists()
    assert (clone / "var" / "jwt_private.pem").exists()


def _children(pid: int) -> list[int]:
    """The process's children, from /proc (gunicorn's workers; none for a single uvicorn)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found
