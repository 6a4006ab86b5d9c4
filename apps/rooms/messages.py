"""WebSocket message schemas (docs/api.md, "WebSocket"): one small validated model per type.

Client -> server messages are parsed here and nowhere else: strict types (no "1" for 1, no
true for 1), no unknown fields, finite numbers only. Anything else becomes an ``error`` frame
(apps.core.events.error, with every other server -> client message); the connection stays open.
The playback change is also the body of PUT rooms/{id}/playback (serializers.playback_change):
one definition, one set of rules, for both.
"""

from __future__ import annotations

import enum
import json
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from apps.core import metrics

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


# --- the playback change: one definition for PUT rooms/{id}/playback and the socket ---------------

RATE_MIN, RATE_MAX = 0.25, 4.0
POSITION_MAX = 10 * 24 * 3600.0  # ten days of video is more than any real stream position
RATE_RANGE = "rate_range"  # the error type of a rate outside RATE_MIN..RATE_MAX


class Unset(enum.Enum):
    """The "not given" of an argument where None means something (``movie_id=None``: no movie)."""

    UNSET = "UNSET"


UNSET = Unset.UNSET


def _clamp_position(value: float) -> float:
    # Before the start is the start; past ten days is past any real stream.
    return min(max(0.0, value), POSITION_MAX)


def _rate_in_range(value: float) -> float:
    if not RATE_MIN <= value <= RATE_MAX:
        # Both transports have always answered in these words ("rate: From 0.25 to 4.0.").
        raise PydanticCustomError(RATE_RANGE, f"From {RATE_MIN} to {RATE_MAX}.")
    return value


MovieId = Annotated[str, Field(max_length=32, description="A movie of this room's playlist.")]
Position = Annotated[
    float, Field(description=f"Seconds; clamped to 0..{POSITION_MAX:.0f}."), AfterValidator(_clamp_position)
]
Rate = Annotated[
    float, Field(json_schema_extra={"minimum": RATE_MIN, "maximum": RATE_MAX}), AfterValidator(_rate_in_range)
]
Version = Annotated[int, Field(description="The version this change is based on; another one is a 409.")]


class PlaybackChange(BaseModel):
    """A change of the room's playback, the body of PUT rooms/{id}/playback: any of the fields,
    the others stay as they are. ``null`` is the same as leaving a field out, except
    ``movie_id: null``: no movie."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)

    movie_id: MovieId | None = None
    playing: bool | None = None
    position: Position | None = None
    rate: Rate | None = None
    version: Version | None = None

    def changes(self) -> dict[str, Any]:
        """What was given, as services.playback_update's keyword arguments."""
        given: dict[str, Any] = {}
        if self.movie_id is not None or "movie_id" in self.model_fields_set:
            given["movie_id"] = self.movie_id
        if self.playing is not None:
            given["playing"] = self.playing
        if self.position is not None:
            given["position"] = self.position
        if self.rate is not None:
            given["rate"] = self.rate
        if self.version is not None:
            given["expected_version"] = self.version
        return given


class Playback(_ClientMessage, PlaybackChange):
    """The socket's ``playback`` message: a PlaybackChange, the same rules as PUT playback."""

    type: Literal["playback"]
    # A frame's version must also be a version a room can have: a socket has always answered
    # one outside 0..2**62 as malformed, where PUT answers any integer but the current one 409.
    version: Annotated[int, Field(ge=0, le=2**62)] | None = None


class Sync(_ClientMessage):
    type: Literal["sync"]


class Ready(_ClientMessage):
    type: Literal["ready"]
    ready: bool


class Members(_ClientMessage):
    """The next page of who is online: ``after`` is the ``members_next`` of the hello or the
    ``next`` of the last ``members_page``."""

    type: Literal["members"]
    after: Annotated[str, Field(min_length=1, max_length=512)] | None = None
    limit: Annotated[int, Field(ge=1, le=200)] = 50


ClientMessage = Annotated[
    Ping | Chat | Emoji | Playback | Sync | Ready | Members, Field(discriminator="type")
]
_adapter: TypeAdapter = TypeAdapter(ClientMessage)
CLIENT_TYPES = ("ping", "chat", "emoji", "playback", "sync", "ready", "members")


class BadMessage(Exception):
    def __init__(self, message: str, ref: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.ref = ref


def _no_constants(name: str):
    raise ValueError(f"{name} is not valid JSON")


Parsed = Ping | Chat | Emoji | Playback | Sync | Ready | Members


def parse(text: str | None, raw_bytes: bytes | None = None) -> Parsed:
    """Parse one client frame. Raises BadMessage with a human message (and the ref if any).
    Counted in /metrics by type, ``invalid`` for a refused frame."""
    try:
        message = _parse(text, raw_bytes)
    except BadMessage:
        metrics.received("invalid").inc()
        raise
    metrics.received(message.type).inc()
    return message


def _parse(text: str | None, raw_bytes: bytes | None) -> Parsed:
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
