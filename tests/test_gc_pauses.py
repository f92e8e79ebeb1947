"""The engine reports the garbage collector's pauses (a full collection stops every thread of the process)."""

import gc

import pytest

from streamret import gc_pauses
from streamret.engine import Engine


def test_collections_are_counted_and_timed_in_the_engines_stats():
    with Engine.from_model("random:tiny", device="cpu") as engine:
        before = engine.stats()
        gc.collect()
        gc.collect()
        after = engine.stats()
    assert after["gc_collections"] >= before["gc_collections"] + 2
    assert after["gc_pause_seconds"] > before["gc_pause_seconds"]
    assert 0 < after["gc_pause_max_seconds"] <= after["gc_pause_seconds"]


def test_freeze_startup_keeps_existing_objects_out_of_later_collections_and_collects_less_often():
    kept = [[i] for i in range(1000)]
    threshold = gc.get_threshold()
    try:
        gc_pauses.freeze_startup()
        assert gc.get_freeze_count() >= len(kept)
        assert gc.get_threshold() == (gc_pauses.SERVING_GEN0_THRESHOLD, *threshold[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_a_serving_processes_threshold_can_be_set_by_the_environment_and_a_bad_one_is_named(monkeypatch):
    threshold = gc.get_threshold()
    try:
        monkeypatch.setenv(gc_pauses.GEN0_ENV, "700")
        gc_pauses.freeze_startup()
        assert gc.get_threshold() == (700, *threshold[1:])
        for bad in ("0", "-5", "lots"):
            monkeypatch.setenv(gc_pauses.GEN0_ENV, bad)
            with pytest.raises(ValueError, match=f"{gc_pauses.GEN0_ENV}='{bad}': give a positive number"):
                gc_pauses.freeze_startup()
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
