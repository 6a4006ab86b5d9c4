"""apps/core/ids.py: opaque ids that are safe as command-line arguments."""

from __future__ import annotations

import re

from apps.core import ids


def test_ids_are_url_safe_of_fixed_length_and_never_start_with_a_dash(monkeypatch):
    made = {ids.new_id() for _ in range(5000)}
    assert len(made) == 5000
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{15}", value) for value in made)
    drawn = iter(["-startsWithDash1", "-anotherDashOne2", "fineAsItIs123456"])
    monkeypatch.setattr(ids.secrets, "token_urlsafe", lambda n: next(drawn))
    assert ids.new_id() == "fineAsItIs123456"  # drawn again until it does not
