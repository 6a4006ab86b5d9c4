"""Every rate limit, REST and WebSocket (docs/security.md, "Limits").

REST limits count on the shared cache (Redis in production), cluster-wide, with Retry-After; the
WebSocket allowances are token buckets in this process (the second half of this module).

Counting is django-ratelimit's fixed window: its window edges, clock and cache keys, through its
module-private helpers (requirements.txt keeps it below 5; the tests pin the behaviour). This
module names the limits (settings.RATELIMITS), keys them, raises the API's error, and can give
back an attempt that turned out not to count (a login with the right password).

Every count is an atomic increment that is refused when it goes over, so parallel requests cannot
all pass one "is there room?" check and then count together. While Redis does not answer (or its
breaker is open), the limits count in this process instead (docs/security.md, "When Redis is down"):
a limit per process is weaker than one per cluster, but none at all would let a Redis outage
lift every limit. Redis is asked again as soon as the breaker lets a call through.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from time import monotonic
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.cache import caches
from django.http import HttpRequest
from django_ratelimit import core as ratelimit_core
from rest_framework.throttling import BaseThrottle

from apps.core import metrics
from apps.core.errors import RateLimited
from apps.core.net import address_key, client_ip
from apps.core.redis import REDIS_DOWN_ERRORS, redis_breaker
from apps.core.resilience import CircuitOpen

if TYPE_CHECKING:  # DRF's views import the throttle classes (this module) when first loaded
    from rest_framework.request import Request
    from rest_framework.views import APIView

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Usage:
    """One count against a limit: where it was counted, so it can be given back."""

    count: int
    limit: int
    window: int  # epoch second at which the window ends (it still holds at that second)
    cache_key: str
    local: bool

    @property
    def over(self) -> bool:
        return self.count > self.limit

    @property
    def retry_after(self) -> int:
        """Seconds until a new window. The window still holds *at* its end, so a client that
        waited exactly ``window - now`` was refused again: one more second is when it may retry."""
        return max(0, self.window - int(_now())) + 1


def _now() -> float:
    # django-ratelimit's clock (its module's ``time``), so the windows here and there agree and a
    # test can freeze both at once.
    return float(ratelimit_core.time.time())


# --- the per-process fallback ---------------------------------------------------------------------


class LocalCounter:
    """Fixed-window counters in this process, for while Redis is unreachable.

    Thread-safe (one lock; every operation is a few dictionary steps). Bounded: a key whose window
    has ended is dropped when met and by a sweep at most once a second; when ``max_keys`` are
    held, the keys touched longest ago that are still *under* their limit go first (a tenth of the
    table at once), so a flood of new keys costs counts that refuse nothing yet, never a count
    that is refusing someone (an account under attack keeps its lock-out), and never memory.
    """

    def __init__(self, max_keys: int = 10_000) -> None:
        self.max_keys = max_keys
        self._lock = threading.Lock()
        # key -> [window end, count, limit]; in the order last touched, oldest first
        self._counts: dict[str, list[int]] = {}
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._counts)

    def count(self, cache_key: str, *, window: int, limit: int, increment: bool, now: float) -> int:
        with self._lock:
            entry = self._counts.pop(cache_key, None)
            if entry is not None and entry[0] != window:
                entry = None  # an earlier window's count: it no longer counts
            if entry is None:
                if not increment:
                    return 0
                self._make_room(now)
                entry = [window, 0, limit]
            if increment:
                entry[1] += 1
            self._counts[cache_key] = entry  # (re)inserted last: the most recently touched
            return entry[1]

    def give_back(self, cache_key: str, *, window: int) -> None:
        with self._lock:
            entry = self._counts.get(cache_key)
            if entry is not None and entry[0] == window and entry[1] > 0:
                entry[1] -= 1

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()

    def _make_room(self, now: float) -> None:
        if now >= self._next_sweep or len(self._counts) >= self.max_keys:
            self._next_sweep = now + 1.0
            for key in [k for k, entry in self._counts.items() if entry[0] < int(now)]:
                del self._counts[key]
        if len(self._counts) < self.max_keys:
            return
        batch = max(1, self.max_keys // 10)
        under = [k for k, (_w, count, limit) in self._counts.items() if count < limit][:batch]
        for key in under:
            del self._counts[key]
        while len(self._counts) >= self.max_keys:  # every key is refusing someone: oldest first
            del self._counts[next(iter(self._counts))]


local_counter = LocalCounter()


# --- counting ------------------------------------------------------------------------------------


def _shared_count(cache_key: str, *, period: int) -> int:
    cache = caches[settings.RATELIMIT_USE_CACHE]
    for _ in range(2):
        if cache.add(cache_key, 1, period + ratelimit_core.EXPIRATION_FUDGE):
            return 1
        try:
            return cache.incr(cache_key)  # atomic (INCRBY in Redis, under a lock in locmem)
        except ValueError:
            continue  # expired between add and incr: the next add starts the new window
    cache.set(cache_key, 1, period + ratelimit_core.EXPIRATION_FUDGE)
    return 1


def _count(*, limit: str, key: str) -> Usage | None:
    """Count one event against ``limit`` for ``key`` (None when limits are off)."""
    if not settings.RATELIMIT_ENABLE:
        return None
    rate = settings.RATELIMITS[limit]
    allowed, period = ratelimit_core._split_rate(rate)
    window = ratelimit_core._get_window(key, period)
    cache_key = ratelimit_core._make_cache_key(f"synctv.{limit}", window, rate, key, ratelimit_core.ALL)

    def shared() -> Usage:
        count = _shared_count(cache_key, period=period)
        return Usage(count=count, limit=allowed, window=window, cache_key=cache_key, local=False)

    if not settings.REDIS_URL:
        return shared()  # the embedded default: the cache is this process's memory anyway
    try:
        # Through the Redis breaker: while Redis is down, do not wait on it for every request.
        return redis_breaker.call(shared)
    except (CircuitOpen, *REDIS_DOWN_ERRORS):
        logger.warning("rate limit %s counted in this process: Redis unavailable", limit)
        count = local_counter.count(cache_key, window=window, limit=allowed, increment=True, now=_now())
        return Usage(count=count, limit=allowed, window=window, cache_key=cache_key, local=True)


def take(*, limit: str, key: str) -> Usage | None:
    """Count one attempt against ``limit`` for ``key``; raise RateLimited if that goes over.

    The count comes first, so of N parallel attempts exactly the limit's number get through.
    Returns the usage (None when limits are off) for ``give_back``."""
    usage = _count(limit=limit, key=key)
    if usage is not None and usage.over:
        metrics.rate_limited(limit).inc()
        raise RateLimited(usage.retry_after)
    return usage


def give_back(usage: Usage | None) -> None:
    """Un-count an attempt ``take`` counted, in the window it was counted in (never a later one)."""
    if usage is None:
        return
    if usage.local:
        local_counter.give_back(usage.cache_key, window=usage.window)
        return

    def decrement() -> None:
        try:
            caches[settings.RATELIMIT_USE_CACHE].decr(usage.cache_key)
        except ValueError:
            pass  # the window has ended and its count is gone: nothing to give back

    if not settings.REDIS_URL:
        decrement()
        return
    try:
        redis_breaker.call(decrement)
    except (CircuitOpen, *REDIS_DOWN_ERRORS):
        pass  # a lost refund only makes the limit stricter for this window


def hit(request: HttpRequest, *, limit: str, key: str) -> None:
    """Count one event against ``limit`` for ``key``; raise RateLimited when over."""
    take(limit=limit, key=key)


def ip_key(ip: str) -> str:
    """The key of a per-address limit (an IPv6 client counts by its /64: apps.core.net)."""
    return f"ip:{address_key(ip)}"


def hit_ip(request: HttpRequest, *, limit: str) -> None:
    hit(request, limit=limit, key=ip_key(client_ip(request)))


class ApiRateThrottle(BaseThrottle):
    """100 API requests a minute per client IP (docs/security.md, "Limits")."""

    def allow_request(self, request: Request, view: APIView) -> bool:
        usage = _count(limit="api", key=ip_key(client_ip(request)))
        self._wait = usage.retry_after if usage else None
        if usage and usage.over:
            metrics.rate_limited("api").inc()
            return False
        return True

    def wait(self) -> int | None:
        return self._wait


# --- the WebSocket allowances: token buckets in this process ---------------------------------------
# A socket lives on one node, and these limits exist to stop one client from flooding the rooms it
# is in (every chat line, emoji, ready change and join is written to every member's socket). So
# they count where the frames arrive, in memory, and cost nothing on the real-time path; counting
# them in Redis would add a round trip to every chat line. The price, documented in
# docs/security.md: a user whose sockets sit on N `ws` nodes gets N times the chat allowance.
# They are not turned off by RATELIMIT_ENABLE, which is for the REST counters (tests and
# benchmarks that log in many times); a node always protects its rooms.


@dataclass(frozen=True)
class Allowance:
    """``burst`` at once, then ``per_second``."""

    burst: int
    per_second: float


SOCKET_ALLOWANCES: dict[str, Allowance] = {
    "ws_frame": Allowance(40, 20.0),  # any frame, per socket
    "ws_chat": Allowance(5, 1.0),  # per user
    "ws_emoji": Allowance(10, 3.0),  # per user
    # Per user and room. A ready change is broadcast to every member; one past the allowance is
    # delayed, never refused (the consumer sends the latest state once the allowance allows).
    "ws_ready": Allowance(4, 2.0),
    # Per user and room: each connect and its leave are announced to the room. 10 covers reloads
    # and a flaky network; past it the socket is refused with 4429 and ``retry_after``.
    "ws_connect": Allowance(10, 0.5),
}
# Open sockets of one user in one room on one node. A few tabs or windows (a phone, a TV, a
# laptop) are normal; each socket is a subscriber in every fan-out and a presence entry, so more
# is a cost others pay. The next one is refused, not the oldest closed: two tabs that reconnect
# would evict each other forever.
MAX_SOCKETS_PER_USER_ROOM = 5


class TokenBucket:
    """Burst ``capacity``, refilled at ``rate`` per second. A named bucket (an allowance of
    SOCKET_ALLOWANCES) counts its refusals in /metrics."""

    __slots__ = ("capacity", "name", "rate", "stamp", "tokens")

    def __init__(self, capacity: float, rate: float, name: str = "") -> None:
        self.capacity, self.rate, self.tokens, self.stamp = capacity, rate, capacity, monotonic()
        self.name = name

    def take(self) -> bool:
        now = monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        if self.name:
            metrics.rate_limited(self.name).inc()
        return False

    def wait(self) -> float:
        """Seconds until the next token (after a failed ``take``)."""
        return max(0.0, (1 - self.tokens) / self.rate)

    def give_back(self) -> None:
        """Undo a ``take`` that turned out not to count (the connect was refused for its token)."""
        self.tokens = min(self.capacity, self.tokens + 1)


class LocalBuckets:
    """One bucket per key under each allowance, in this process. Bounded: past ``max_keys`` the
    table of that allowance starts over, which only forgives (every key gets a full bucket).
    The event loop is the only caller, so there is no lock."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._tables: dict[str, dict[str, TokenBucket]] = {}

    def bucket(self, name: str, key: str) -> TokenBucket:
        table = self._tables.setdefault(name, {})
        found = table.get(key)
        if found is None:
            if len(table) >= self.max_keys:
                table.clear()
            found = table[key] = socket_bucket(name)
        return found

    def clear(self) -> None:
        self._tables.clear()


def socket_bucket(name: str) -> TokenBucket:
    """A new bucket with the allowance ``name`` (for a limit per socket, held by the socket)."""
    allowance = SOCKET_ALLOWANCES[name]
    return TokenBucket(allowance.burst, allowance.per_second, name)


class LocalSlots:
    """Counts of open things per key, capped (sockets per user and room on this node)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._counts: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._counts)

    def take(self, key: str) -> bool:
        count = self._counts.get(key, 0)
        if count >= self.cap:
            return False
        self._counts[key] = count + 1
        return True

    def give_back(self, key: str) -> None:
        left = self._counts.get(key, 1) - 1
        if left > 0:
            self._counts[key] = left
        else:
            self._counts.pop(key, None)

    def clear(self) -> None:
        self._counts.clear()


local_buckets = LocalBuckets()
socket_slots = LocalSlots(MAX_SOCKETS_PER_USER_ROOM)
