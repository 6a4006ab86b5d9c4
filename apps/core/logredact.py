"""Keep credentials that travel in a URL's query string out of the logs.

docs/api.md lets a WebSocket client put its access token in the URL (``/ws/rooms/{id}/?token=``),
the OAuth provider sends its one-time ``code`` back in the callback URL, and an invite link
(``/rooms/{id}/?invite=``) is a key to its room. Access logs write
the full request line, so without this every such request leaves a usable bearer token in the
``ws`` process's output (docs/security.md).

:class:`RedactSecretsFilter` rewrites ``token=<value>`` (and the other names in
:data:`SECRET_PARAMETERS`) to ``token=[redacted]`` in a record's message and arguments. It is
attached two ways, because the servers' loggers do not reach the root handler:

- on the root ``console`` handler in ``settings.LOGGING`` (everything that propagates: Django's
  ``django.request``, the apps' own loggers);
- on the servers' own loggers (``uvicorn.access``, ``uvicorn.error``, ``gunicorn.access``,
  ``gunicorn.error``; ``django.server`` for runserver) by :func:`install`, which
  ``CoreConfig.ready()`` calls. Both servers configure those loggers (uvicorn with
  ``dictConfig(LOGGING_CONFIG)``, gunicorn in its ``Logger.setup``) *before* they import the
  application, and neither touches a logger's filters afterwards, so a filter added when Django
  starts stays for the life of the process (no ``--log-config`` needed in the Procfile).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

# Query parameters whose value is a credential. ``invite``: the room page's ``?invite=`` link lets
# anyone holding it into the room, password and approval skipped; logs are read by more people
# than may invite (docs/security.md). ``key``: the e-mail links (``/verify-email/?key=``,
# ``/reset-password/?key=``): a reset key is the account's password for an hour. ``secret``: the
# RTMP server's callbacks (``/internal/rtmp/on_publish?secret=``, docs/streaming.md).
SECRET_PARAMETERS = ("token", "access_token", "refresh_token", "code", "invite", "key", "secret")
REDACTED = "[redacted]"


def _spelled(text: str) -> str:
    """A regex for ``text`` with each character written plainly or percent-encoded (``%74oken``
    is ``token`` to a query parser, so it must be to this filter too)."""

    def one(c: str) -> str:
        encoded = "|".join(sorted({f"%{ord(v):02x}" for v in (c.lower(), c.upper())}))
        return f"(?:{re.escape(c)}|{encoded})"

    return "".join(one(c) for c in text)


# A parameter starts the string (gunicorn's bare query string atom) or follows ? & or ;, plainly
# or percent-encoded (a whole URL inside another one's parameter, as ``/login/?next=`` carries
# the room's ``?invite=``). Its value runs to the next separator, plain or encoded.
_START = r"(?:(?<=[?&;])|(?<=%3f)|(?<=%26)|(?<=%3b)|^)"
_NAME = "|".join(_spelled(name) for name in SECRET_PARAMETERS)
_EQUALS = r"(?:=|%3d)"
_VALUE = r"(?:(?!%26|%3b|%23|%20)[^&;#\s\"'])*"
_PATTERN = re.compile(f"{_START}({_NAME}){_EQUALS}{_VALUE}", re.IGNORECASE)
# Loggers with their own handlers (propagate off): the servers', and runserver's request log.
SERVER_LOGGERS = ("uvicorn.access", "uvicorn.error", "gunicorn.access", "gunicorn.error", "django.server")


def redact(text: str) -> str:
    return _PATTERN.sub(lambda m: f"{m.group(1)}={REDACTED}", text)


_PLAIN = (int, float, bool, type(None), bytes)


def _redact_value(value):
    """A string argument redacted; another object (httpx logs its ``URL`` objects) replaced by
    its redacted text when that text holds a credential, left alone otherwise."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, _PLAIN):
        return value
    text = str(value)
    redacted = redact(text)
    return redacted if redacted != text else value


def _formats(msg: str, args: object) -> bool:
    try:
        msg % args
    except (TypeError, ValueError, KeyError):
        return False
    return True


class RedactSecretsFilter(logging.Filter):
    """Rewrites secrets in ``msg`` and in each string argument, in place.

    The arguments are redacted one by one rather than folded into ``msg``: uvicorn's
    AccessFormatter reads ``record.args`` positionally and gunicorn's access log formats a dict.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            original, record.msg = record.msg, redact(record.msg)
            if record.args and record.msg != original and not _formats(record.msg, record.args):
                # The credential's value was a placeholder (``token=%s``): redacting it left an
                # argument over. Fold the arguments in, then redact the whole line.
                record.msg = redact(original % record.args)
                record.args = None
                return True
        args = record.args
        if isinstance(args, dict):
            # In place: gunicorn's access log passes a dict subclass (SafeAtoms) whose lookups of
            # headers and missing atoms a plain dict would not answer.
            for key, value in list(args.items()):
                if isinstance(value, str):
                    dict.__setitem__(args, key, redact(value))
        elif isinstance(args, Mapping):
            record.args = {key: _redact_value(value) for key, value in args.items()}
        elif isinstance(args, tuple):
            record.args = tuple(_redact_value(value) for value in args)
        return True


_FILTER = RedactSecretsFilter()


def install(logger_names=SERVER_LOGGERS) -> None:
    """Attach the filter to the servers' loggers (idempotent)."""
    for name in logger_names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecretsFilter) for f in logger.filters):
            logger.addFilter(_FILTER)
