"""Fixtures shared by the tests that drive a real browser (tests/browser_support.py) and by the
WebSocket cluster tests (tests/wsclient.py)."""

from __future__ import annotations

import pytest

from tests import browser_support as bs


@pytest.fixture(scope="module")
def nodes(cluster):
    """The first two nodes of the module's ``cluster`` (tests/wsclient.py, ``cluster_fixture``)."""
    return cluster.nodes[0], cluster.nodes[1]


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
