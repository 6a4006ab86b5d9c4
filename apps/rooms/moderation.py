"""Text that leaves the server: HTML escaping and the sensitive-word filter (docs/security.md,
"Checks on what comes in")."""

from __future__ import annotations

import re
import time

from django.core.cache import cache

from apps.core.redis import REDIS_DOWN_ERRORS

ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"}
_ESCAPE_RE = re.compile("[&<>\"']")

# The word list is read at most every few seconds per process; editing it bumps a version in the
# shared cache so every node reloads on its next check.
WORDS_VERSION_KEY = "sensitive_words:version"
RELOAD_SECONDS = 5.0


def escape(text: str) -> str:
    """Escape the five HTML-significant characters & < > " '."""
    return _ESCAPE_RE.sub(lambda m: ESCAPES[m.group()], text)


class _WordFilter:
    def __init__(self) -> None:
        self._pattern: re.Pattern | None = None
        self._version = None
        self._checked_at = 0.0

    def invalidate(self) -> None:
        self._checked_at = 0.0
        self._version = object()

    def _current(self) -> re.Pattern | None:
        now = time.monotonic()
        if now - self._checked_at < RELOAD_SECONDS:
            return self._pattern
        self._checked_at = now
        try:
            version = cache.get(WORDS_VERSION_KEY, 0)
        except REDIS_DOWN_ERRORS:
            # Redis is down (docs/security.md, "When Redis is down"): keep the list in hand; with
            # none yet, read it now and ask again on the next check. Never chat unfiltered.
            if self._pattern is not None or self._version is not None:
                return self._pattern
            version = object()
        if version != self._version:
            from apps.rooms.models import SensitiveWord

            words = sorted(
                {w.strip() for w in SensitiveWord.objects.values_list("word", flat=True) if w.strip()},
                key=len,
                reverse=True,  # longest first, so "badword" wins over "bad"
            )
            self._pattern = re.compile("|".join(map(re.escape, words)), re.IGNORECASE) if words else None
            self._version = version
        return self._pattern

    def mask(self, text: str) -> str:
        pattern = self._current()
        if pattern is None:
            return text
        return pattern.sub(lambda m: "*" * len(m.group()), text)


word_filter = _WordFilter()


def words_changed() -> None:
    """Call after editing the list: every node reloads within RELOAD_SECONDS."""
    try:
        cache.incr(WORDS_VERSION_KEY)
    except ValueError:
        cache.set(WORDS_VERSION_KEY, 1, None)
    word_filter.invalidate()


def clean_text(text: str) -> str:
    """What chat text becomes before it leaves the server: words masked, then escaped."""
    return escape(word_filter.mask(text))
