"""Fixtures shared by the tests that drive a real browser (tests/browser_support.py)."""

from __future__ import annotations

import pytest

from tests import browser_support as bs


@pytest.fixture(scope="module")
def browser_tools():
    """Chromium and ffmpeg are installed (scripts/install-system-packages); a browser module
    uses this for every test: ``pytest.mark.usefixtures("browser_tools")``."""
    bs.require_tools()


@pytest.fixture(scope="module")
def browser(browser_tools):
    """Debian's Chromium through Playwright, one per module."""
    with bs.launched_chromium() as chromium:
        yield chromium
