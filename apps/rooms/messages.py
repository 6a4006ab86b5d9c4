"""WebSocket message schemas (API.md § WebSocket): one small validated model per type.

Client -> server messages are parsed here and nowhere else: strict types (no "1" for 1, no
true for 1), no unknown fields, finite numbers only. Anything else becomes an ``error`` frame;
the connection stays open.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

MAX_FRAME_BYTES = 64 * 1024
MAX_CHAT_CHARS = 2000


def _no_nul(value: str) -> str:
    # PostgreSQL cannot store NUL in text; REST refuses it too (DRF's null-character check).
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    return value


class _ClientMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)
    # Echoed back in an error about this message, so a client can match them.
    ref: Annotated[str, Field(max_length=64)] | Annotated[int, Field(ge=0, le=2**53)] | None = None


class Ping(_ClientMessage):
    type: Literal["ping"]
    t: float | None = None


class Chat(_ClientMessage):
    type: Literal["chat"]
    text: Annotated[str, Field(min_length=1, max_length=MAX_CHAT_CHARS), AfterValidator(_no_nul)]


class Emoji(_ClientMessage):
    type: Literal["emoji"]
    emoji: Annotated[str, Field(min_length=1, max_length=16), AfterValidator(_no_nul)]


class Playback(_ClientMessage):
    type: Literal["playback"]
    playing: bool | None = None
    position: float | None = None
    rate: float | None = None
    movie_id: Annotated[str, Field(max_length=32)] | None = None
    version: Annotated[int, Field(ge=0, le=2**62)] | None = None


class Sync(_ClientMessage):
    type: Literal["sync"]


class Ready(_ClientMessage):
    type: Literal["ready"]
    ready: bool


ClientMessage = Annotated[Ping | Chat | Emoji | Playback | Sync | Ready, Field(discriminator="type")]
_adapter: TypeAdapter = TypeAdapter(ClientMessage)
CLIENT_TYPES = ("ping", "chat", "emoji", "playback", "sync", "ready")


class BadMessage(Exception):
    def __init__(self, message: str, ref: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.ref = ref


def _no_constants(name: str):
    raise ValueError(f"{name} is not valid JSON")


def parse(text: str | None, raw_bytes: bytes | None = None) -> Ping | Chat | Emoji | Playback | Sync | Ready:
    """Parse one client frame. Raises BadMessage with a human message (and the ref if any)."""
    if text is None:
        raise BadMessage("Binary frames are not accepted; send JSON text.")
    if len(text) > MAX_FRAME_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES:
        raise BadMessage(f"Frames are limited to {MAX_FRAME_BYTES} bytes.")
    try:
        data = json.loads(text, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        raise BadMessage("Not valid JSON.") from exc
    if not isinstance(data, dict):
        raise BadMessage("A message is a JSON object with a 'type'.")
    ref = data.get("ref")
    if isinstance(ref, bool) or not isinstance(ref, str | int):
        ref = None
    elif isinstance(ref, str):
        ref = ref[:64]
        if not ref.isascii():
            try:
                ref.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate: it could not be sent back in a text frame
                ref = None
    kind = data.get("type")
    if kind not in CLIENT_TYPES:
        raise BadMessage(f"Unknown message type; expected one of {', '.join(CLIENT_TYPES)}.", ref)
    try:
        return _adapter.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "message"
        raise BadMessage(f"{where}: {first.get('msg', 'invalid')}", ref) from None
    except RecursionError:
        raise BadMessage("Message nested too deeply.", ref) from None


# --- server -> client --------------------------------------------------------------------------------
# Every server message carries server_time (ms since the epoch); apps.core.realtime.encode adds it.


def error(code: str, message: str, ref: Any = None, **details: Any) -> dict:
    body: dict[str, Any] = {"type": "error", "code": code, "message": message, "ref": ref}
    if details:
        body["details"] = details
    return body
