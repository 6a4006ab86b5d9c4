"""The `rtmp` process seen from Django: its nginx config, and the calls Django makes to it.

nginx with Debian's RTMP module receives streamers on RTMP_PORT, writes HLS under var/ and
serves it on HLS_PORT to signed URLs only (apps/streaming/hls.py). Django renders its config
from deploy/rtmp/nginx.conf.template (`scripts/rtmp` runs ``python -m apps.streaming.ingest``)
and drops publishers through the module's control API on a loopback-only port. The process is
optional: without it the streams API keeps working and says ingest is not running
(docs/streaming.md).
"""

from __future__ import annotations

import grp
import http.client
import logging
import os
import pwd
import re
import sys
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "rtmp" / "nginx.conf.template"
# The RTMP application streamers publish to: the last path segment of RTMP_URL.
APPLICATION = "live"
# Probing and cutting are quick loopback calls: an ingest that does not answer at once counts
# as not running rather than holding up an API request.
CONTROL_TIMEOUT = 1.0

_PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)\}")
# What may go into the config unquoted: nginx gives `;`, `{`, `"`, `$` and spaces meaning.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_./-]+")
_SIGNING_SECRET = re.compile(r"[A-Za-z0-9_-]{16,}")
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.\[\]:-]+")


class HasId(Protocol):
    @property
    def id(self) -> object: ...


def stream_name(stream: HasId) -> str:
    """The name nginx knows a stream by once on_publish renamed it: its opaque id, never the key."""
    return str(stream.id)


def _control(path: str) -> tuple[int, bytes] | None:
    """(status, body) of a GET on the control port; None when nothing answers there."""
    conn = http.client.HTTPConnection("127.0.0.1", settings.RTMP_CONTROL_PORT, timeout=CONTROL_TIMEOUT)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read(64)
    except OSError:
        return None
    finally:
        conn.close()


def ingest_running() -> bool:
    """Whether this node's `rtmp` process answers on its control port."""
    answer = _control("/ping")
    return answer is not None and answer[0] == 204


def cut_publisher(stream: HasId) -> bool:
    """Drop the stream's publisher on this node's RTMP server. False when nothing was cut: no
    publisher, or no ingest process (the API works without one)."""
    name = stream_name(stream)
    answer = _control(f"/control/drop/publisher?app={APPLICATION}&name={quote(name, safe='')}")
    if answer is None:
        logger.warning("rtmp ingest not running: publisher of stream %s not cut", name)
        return False
    status, body = answer
    # The control module answers 200 with the number of sessions it dropped.
    dropped = status == 200 and body.strip().isdigit() and int(body) > 0
    logger.info("rtmp publisher of stream %s %s", name, "cut" if dropped else "not found")
    return dropped


def _plain(name: str, value: str, pattern: re.Pattern[str] = _PLAIN_PATH) -> str:
    if not pattern.fullmatch(value):
        raise ImproperlyConfigured(f"{name} has characters the rtmp config cannot hold: {value!r}")
    return value


def _callback_url() -> str:
    url = settings.RTMP_CALLBACK_URL
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ImproperlyConfigured(f"RTMP_CALLBACK_URL must be http://host:port (nginx-rtmp): {url!r}")
    return _plain("RTMP_CALLBACK_URL", url.rstrip("/"), re.compile(r"http://[A-Za-z0-9.\[\]:-]+/?"))


def _user_directive(run_dir: Path) -> str:
    """As root, nginx's workers would run as `nobody` and could not write HLS under var/: they
    run as var/'s owner instead. Unprivileged, nginx keeps the user that started it."""
    if os.geteuid() != 0:
        return ""
    info = run_dir.stat()
    return f"user {pwd.getpwuid(info.st_uid).pw_name} {grp.getgrgid(info.st_gid).gr_name};"


def config_values(run_dir: Path) -> dict[str, str]:
    hls_dir = run_dir / "hls"
    origins = [_plain("CORS_ALLOWED_ORIGINS", o, _ORIGIN) for o in settings.CORS_ALLOWED_ORIGINS]
    module = settings.RTMP_NGINX_MODULE
    if not Path(module).is_file():
        raise ImproperlyConfigured(
            f"RTMP_NGINX_MODULE {module!r} not found: run scripts/install-system-packages"
        )
    return {
        "RTMP_MODULE": _plain("RTMP_NGINX_MODULE", module),
        "USER_DIRECTIVE": _user_directive(run_dir),
        "RUN_DIR": _plain("SYNCTV_VAR_DIR", str(run_dir)),
        "HLS_DIR": _plain("SYNCTV_VAR_DIR", str(hls_dir)),
        "RTMP_PORT": str(int(settings.RTMP_PORT)),
        "HLS_PORT": str(int(settings.HLS_PORT)),
        "CONTROL_PORT": str(int(settings.RTMP_CONTROL_PORT)),
        "CALLBACK_URL": _callback_url(),
        "CALLBACK_SECRET": quote(settings.RTMP_CALLBACK_SECRET, safe=""),
        "SIGNING_SECRET": _plain("HLS_SIGNING_SECRET", settings.HLS_SIGNING_SECRET, _SIGNING_SECRET),
        "CORS_ORIGIN_MAP": "\n".join(f'        "{origin}" $http_origin;' for origin in origins),
    }


def render(template: str, values: dict[str, str]) -> str:
    """``${NAME}`` placeholders (upper case: nginx's own ``$variables`` are lower case) replaced;
    one without a value is an error rather than an empty directive."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise ImproperlyConfigured(f"rtmp config template: no value for ${{{name}}}")
        return values[name]

    return _PLACEHOLDER.sub(value, template)


def write_config(run_dir: Path | None = None) -> Path:
    """Render the config into var/rtmp/nginx.conf (mode 0600: it holds the secrets) and make
    the directories nginx writes to. Returns the config's path."""
    run_dir = (run_dir or Path(settings.VAR_DIR) / "rtmp").resolve()
    (run_dir / "hls").mkdir(parents=True, exist_ok=True)
    text = render(TEMPLATE.read_text(), config_values(run_dir))
    path = run_dir / "nginx.conf"
    partial = run_dir / "nginx.conf.partial"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    partial.replace(path)
    return path


if __name__ == "__main__":  # scripts/rtmp: print the rendered config's path
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "synctv.settings")
    django.setup()
    sys.stdout.write(f"{write_config()}\n")
