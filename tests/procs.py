"""Helpers for tests that start real server processes (Procfile commands, scripts/run)."""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import httpx

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin"


class QuietRequests:
    """Mixed into an http.server handler class (first): no line on stderr per request, so the
    test log stays readable and never shows a request's query string (codes, tokens)."""

    def log_message(self, format: str, *args: object) -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def procfile_command(name: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise KeyError(name)


def render_template(text: str, values: dict[str, str]) -> str:
    """``${NAME}`` placeholders of a config template (deploy/nginx/synctv.conf.template), as
    envsubst with an explicit list would; nginx's own ``$var`` stay. A missing value: KeyError."""

    def sub(m: re.Match) -> str:
        if m.group(1) not in values:
            raise KeyError(f"template placeholder ${{{m.group(1)}}} has no value")
        return values[m.group(1)]

    return re.sub(r"\$\{([A-Z_]+)\}", sub, text)


def base_env(**overrides: str) -> dict[str, str]:
    """The parent's environment without the service settings, plus the venv on PATH."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "SYNCTV_ENV", "DJANGO_SETTINGS_MODULE"}
    }
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
    env.update(overrides)
    return env


def production_env(*, database_url: str, redis_url: str, broker_url: str, port: int, var_dir: str) -> dict:
    return base_env(
        SYNCTV_ENV="production",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(60),
        SYNCTV_ENCRYPTION_KEY=base64.b64encode(secrets.token_bytes(32)).decode(),
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        CELERY_BROKER_URL=broker_url,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="false",
        RATELIMIT_ENABLE="false",
        PORT=str(port),
        SYNCTV_VAR_DIR=var_dir,
        LOG_LEVEL="WARNING",
    )


@contextmanager
def running(command: str, *, env: dict, cwd: Path = ROOT, log: Path):
    """Start ``command`` in its own process group; stop the whole group afterwards."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.1,
    message: str = "condition",
    *,
    context: Callable[[], str] | None = None,
) -> T:
    """Call ``predicate()`` every ``interval`` seconds until it returns something truthy, and
    return that. After ``timeout`` seconds: AssertionError naming ``message``, followed by
    ``context()`` if given (a server's log, say)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    detail = f"\n{context()}" if context is not None else ""
    raise AssertionError(f"timed out waiting for {message} (within {timeout}s){detail}")


def wait_http(url: str, *, proc: subprocess.Popen, log: Path, timeout: float) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            return httpx.get(url, timeout=2)
        except httpx.HTTPError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {timeout}s:\n{log.read_text()[-4000:]}")


def run(command: str, *, env: dict, cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def account_round_trip(base_url: str, username: str = "alice") -> dict:
    """register -> login -> users/me against a live server; returns the me body."""
    password = "Corr3ct-horse"
    with httpx.Client(base_url=base_url, timeout=10) as client:
        r = client.post("/api/v1/auth/register", json={"username": username, "password": password})
        assert r.status_code == 201, r.text
        r = client.post("/api/v1/auth/login", json={"username": username, "password": password})
        assert r.status_code == 200, r.text
        access = r.json()["access"]
        r = client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {access}"})
        assert r.status_code == 200, r.text
        return r.json()


def publish_test_pattern(url: str, log: Path, seconds: int) -> subprocess.Popen:
    """ffmpeg publishing a generated test pattern (320x240, 25 fps, H.264 with a 1 s GOP, AAC) to
    an RTMP URL for ``seconds``, paced in real time; its errors go to ``log``."""
    command = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
        "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25",
        "-f", "lavfi", "-i", "sine",
        "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-g", "25",
        "-c:a", "aac", "-f", "flv", url,
    ]  # fmt: skip
    return subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=log.open("wb"), stdin=subprocess.DEVNULL
    )


class PrivateRedis:
    """A redis-server of our own on a free port: killing it disturbs no one else. It keeps
    nothing on disk, so a restart comes back empty, like a real Redis restart without persistence.
    Its own session: a Ctrl-C meant for the caller does not stop it before the caller's clean-up.
    Used by the tests and by bench/chaos (``workdir``, ``maxclients`` for thousands of clients)."""

    def __init__(
        self, workdir: Path | None = None, *, maxclients: int | None = None, start_timeout: float = 5.0
    ) -> None:
        if not shutil.which("redis-server"):
            raise AssertionError("redis-server binary not found")
        self.port = free_port()
        self.workdir = workdir or Path(tempfile.gettempdir())
        self.maxclients = maxclients
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        import redis

        # Nothing on disk: no snapshots, no append-only file (and a scratch working directory).
        options = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        if self.maxclients:
            options += ["--maxclients", str(self.maxclients)]
        self.proc = subprocess.Popen(
            [shutil.which("redis-server"), "--port", str(self.port), *options],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise AssertionError("private redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None


# --- the nginx front (deploy/nginx/synctv.conf.template) ---------------------------------------------

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for ``localhost`` and 127.0.0.1 (EC P-256, valid two days) and its key, made
    once per folder with the ``cryptography`` package the app already needs: (cert, key)."""
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    if cert_path.exists():
        return cert_path, key_path
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        # What a strict verifier (Python 3.13's default flags) asks of a self-signed CA.
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def write_front_config(prefix: Path, values: dict[str, str]) -> Path:
    """The production front's files in ``prefix``: nginx.conf rendered from the template with
    ``values`` (``NGINX_PREFIX`` and, unless given, the TLS server on a free loopback port with a
    self-signed certificate in ``prefix/tls`` are filled in), synctv-routes.conf beside it, the
    logs/ and temp/ folders; checked with ``nginx -t``. Returns the nginx.conf path."""
    for folder in ("logs", "temp"):
        (prefix / folder).mkdir(parents=True, exist_ok=True)
    cert, key = self_signed_certificate(prefix / "tls")
    values = {
        "NGINX_PREFIX": str(prefix),
        "TLS_LISTEN": f"127.0.0.1:{free_port()}",
        "TLS_CERT": str(cert),
        "TLS_KEY": str(key),
        **values,
    }
    conf = prefix / "nginx.conf"
    conf.write_text(render_template((ROOT / "deploy/nginx/synctv.conf.template").read_text(), values))
    shutil.copy(ROOT / "deploy/nginx/synctv-routes.conf", prefix / "synctv-routes.conf")
    check = subprocess.run([NGINX, "-t", "-p", str(prefix), "-c", str(conf)], capture_output=True)
    assert check.returncode == 0, check.stderr.decode()
    return conf


def start_front(
    stack_tmp: Path,
    web_ports: list[int],
    ws_ports: list[int],
    *,
    port: int | None = None,
    tls_port: int | None = None,
):
    """nginx from the production template, unprivileged, in ``stack_tmp``, in front of the
    servers on ``web_ports`` and ``ws_ports``, listening on ``port`` (a free one by default) and
    with TLS on ``tls_port`` (its certificate: ``stack_tmp/nginx/tls/cert.pem``); returns (port,
    context manager running it)."""
    prefix = stack_tmp / "nginx"
    port = port or free_port()
    values = {
        "LISTEN_PORT": f"127.0.0.1:{port}",
        "WEB_SERVERS": "\n".join(f"server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;" for p in web_ports),
        "WS_SERVERS": "\n".join(f"server 127.0.0.1:{p} max_fails=0;" for p in ws_ports),
        "WORKER_PROCESSES": "1",
    }
    if tls_port:
        values["TLS_LISTEN"] = f"127.0.0.1:{tls_port}"
    write_front_config(prefix, values)
    command = f"{NGINX} -p {prefix} -c {prefix}/nginx.conf -g 'daemon off;'"
    return port, running(command, env={"PATH": "/usr/sbin:/usr/bin:/bin"}, log=stack_tmp / "nginx.log")


def holds_a_socket(port: int) -> bool:
    """Whether the server on ``port`` has an established TCP connection (behind the front: the
    upstream side of a WebSocket): read from /proc/net/tcp, no tool needed."""
    suffix = f":{port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(suffix) and fields[3] == "01":  # 01: ESTABLISHED
            return True
    return False
