"""Circuit breaker (docs/security.md, "When Redis is down"): stop waiting on a dependency that is down.

Closed: calls go through; ``failure_threshold`` consecutive failures open it. Open: calls are
refused at once (``CircuitOpen``) for ``reset_timeout`` seconds. Half-open: calls go through
again; ``success_threshold`` successes close it, one failure opens it again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class CircuitOpen(Exception):
    """The breaker is open: the dependency failed recently and is not being called."""


class CircuitBreaker:
    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 3,
        success_threshold: int = 1,
        reset_timeout: float = 2.0,
        failure_exceptions: tuple[type[BaseException], ...] = (Exception,),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.success_threshold = success_threshold
        self.reset_timeout = reset_timeout
        self.failure_exceptions = failure_exceptions
        self._clock = clock
        self._lock = threading.Lock()
        self._state = self.CLOSED
        self._failures = 0
        self._successes = 0
        self._opened_at = 0.0
        self._observer: Callable[[str, str], None] | None = None  # set by ``register``

    @property
    def state(self) -> str:
        with self._lock:
            if self._state == self.OPEN and self._clock() - self._opened_at >= self.reset_timeout:
                self._move(self.HALF_OPEN)
                self._successes = 0
            return self._state

    def call(self, fn: Callable[[], T]) -> T:
        if self.state == self.OPEN:
            raise CircuitOpen(self.name)
        try:
            result = fn()
        except self.failure_exceptions:
            self.record_failure()
            raise
        self.record_success()
        return result

    def refusing(self) -> bool:
        """Open, not yet half-open: a caller recording outcomes itself must not call now. A
        closed breaker answers without taking the lock (this is asked before every query)."""
        if self._state == self.CLOSED:
            return False
        return self.state == self.OPEN

    def seconds_until_retry(self) -> float:
        """How long calls stay refused (0 unless open)."""
        with self._lock:
            if self._state != self.OPEN:
                return 0.0
            return max(0.0, self.reset_timeout - (self._clock() - self._opened_at))

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._state == self.HALF_OPEN or self._failures >= self.failure_threshold:
                self._move(self.OPEN)
                self._opened_at, self._failures = self._clock(), 0

    def record_success(self) -> None:
        if self._state == self.CLOSED and not self._failures:
            return  # the usual case, without the lock
        with self._lock:
            self._failures = 0
            if self._state == self.HALF_OPEN:
                self._successes += 1
                if self._successes >= self.success_threshold:
                    self._move(self.CLOSED)

    def reset(self) -> None:
        with self._lock:
            self._move(self.CLOSED)
            self._failures, self._successes = 0, 0

    def _move(self, state: str) -> None:
        """Change state (the lock held) and tell the observer: /metrics shows each change. Open
        turns half-open when it is next asked; a process that stops asking (an idle worker) would
        show "open" long after, so a timer asks for it once the reset timeout has passed."""
        changed, self._state = state != self._state, state
        if not changed or self._observer is None:
            return
        self._observer(self.name, state)
        if state == self.OPEN:
            timer = threading.Timer(self.reset_timeout + 0.01, lambda: self.state)
            timer.daemon = True
            timer.start()


_registered: dict[str, CircuitBreaker] = {}


def register(breaker: CircuitBreaker) -> CircuitBreaker:
    """A breaker the process runs on (not a test's): ``/readyz`` names its state, and
    ``/metrics`` shows it as ``synctv_breaker_state``."""
    from apps.core import metrics

    _registered[breaker.name] = breaker
    breaker._observer = metrics.breaker_changed
    metrics.breaker_changed(breaker.name, breaker.state)
    return breaker


def registered_states() -> dict[str, str]:
    """Each registered breaker's state, by name: closed, open or half_open."""
    return {name: breaker.state for name, breaker in sorted(_registered.items())}
