"""The ``ws`` process's start-up tuning (apps/rooms/lifecycle.py): the garbage collector."""

from __future__ import annotations

import gc

import pytest

from apps.rooms import lifecycle


@pytest.fixture
def collector_restored():
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_startup_sets_the_configured_thresholds_and_freezes_what_is_loaded(settings, collector_restored):
    settings.WS_GC_THRESHOLD = (12345, 7, 9)
    loaded = [object()]  # a container the collector tracks, there before start-up
    assert any(o is loaded for o in gc.get_objects())
    lifecycle.tune_garbage_collector()
    assert gc.get_threshold() == (12345, 7, 9)
    assert not any(o is loaded for o in gc.get_objects())  # frozen: in no generation any more


def test_an_empty_setting_keeps_pythons_thresholds(settings, collector_restored):
    settings.WS_GC_THRESHOLD = ()
    gc.set_threshold(700, 10, 10)
    lifecycle.tune_garbage_collector()
    assert gc.get_threshold() == (700, 10, 10)
