import pytest

from apps.core.resilience import CircuitBreaker, CircuitOpen
from apps.core.tests.helpers import FakeClock


def _fail():
    raise ConnectionError("down")


def test_breaker_opens_after_threshold_refuses_then_half_opens_and_closes():
    clock = FakeClock()
    breaker = CircuitBreaker("t", failure_threshold=2, reset_timeout=5, clock=clock)
    calls = []

    def ok():
        calls.append(1)
        return "ok"

    for _ in range(2):
        with pytest.raises(ConnectionError):
            breaker.call(_fail)
    assert breaker.state == "open"
    with pytest.raises(CircuitOpen):
        breaker.call(ok)
    assert calls == []  # refused without calling
    clock.now = 5
    assert breaker.state == "half_open"
    assert breaker.call(ok) == "ok"
    assert breaker.state == "closed"


def test_half_open_failure_reopens_at_once():
    clock = FakeClock()
    breaker = CircuitBreaker("t", failure_threshold=3, reset_timeout=1, clock=clock)
    for _ in range(3):
        with pytest.raises(ConnectionError):
            breaker.call(_fail)
    clock.now = 1
    with pytest.raises(ConnectionError):
        breaker.call(_fail)
    assert breaker.state == "open"


def test_success_resets_the_failure_count():
    breaker = CircuitBreaker("t", failure_threshold=2)
    with pytest.raises(ConnectionError):
        breaker.call(_fail)
    breaker.call(lambda: None)
    with pytest.raises(ConnectionError):
        breaker.call(_fail)
    assert breaker.state == "closed"


def test_unlisted_exceptions_do_not_count():
    breaker = CircuitBreaker("t", failure_threshold=1, failure_exceptions=(ConnectionError,))
    with pytest.raises(ValueError):
        breaker.call(lambda: (_ for _ in ()).throw(ValueError("bug")))
    assert breaker.state == "closed"
