"""PartClock: wall and thread CPU seconds by part of the step loop (streamret/engine/part_clock.py)."""

import time

import pytest

from streamret.engine.part_clock import PARTS, PartClock


def test_a_wait_counts_as_wall_time_and_work_as_both():
    clock = PartClock()
    t = clock.now()
    time.sleep(0.05)  # off the CPU
    t = clock.add("wait", t)
    end = time.thread_time() + 0.03
    while time.thread_time() < end:  # on it, for 30 ms of this thread's CPU however loaded the host is
        pass
    clock.add("launch", t)
    assert clock.wall["wait"] >= 0.05 and clock.cpu["wait"] < 0.02
    assert clock.cpu["launch"] >= 0.03 and clock.wall["launch"] >= clock.cpu["launch"]
    assert set(clock.wall) == set(clock.cpu) == set(PARTS)
    assert all(v == 0 for k, v in clock.wall.items() if k not in ("wait", "launch"))


def test_an_unknown_part_is_a_key_error():
    with pytest.raises(KeyError):
        PartClock().add("nap", PartClock.now())


def test_a_part_under_way_is_counted_as_it_goes_and_once():
    clock = PartClock()
    t = clock.now()
    clock.begin("idle", t)
    time.sleep(0.05)
    first = clock.wall_now()["idle"]
    time.sleep(0.05)
    second = clock.wall_now()["idle"]
    assert 0.05 <= first < second and clock.wall["idle"] == 0  # (counted by wall_now, not yet added)
    clock.add("idle", t)  # the wait ends: the whole span counted once, and no longer under way
    assert clock.open is None and clock.wall["idle"] >= second and clock.wall_now() == clock.wall


def test_an_engine_waiting_for_work_counts_its_idle_time_between_two_readings():
    """Two stats() readings while the step loop waits for work split the wait as it fell, instead of the whole wait
    landing in the reading after the next step (bench/e2e.py reads the engine when a load starts and ends)."""
    from streamret.engine import Engine

    with Engine.from_model("random:tiny", device="cpu") as e:
        e.append("s", 1, "a few words. ")
        deadline = time.monotonic() + 10
        while not e.waiting_for_work and time.monotonic() < deadline:
            time.sleep(0.01)
        before = e.stats()["loop_parts_seconds"]["idle"]
        time.sleep(0.3)
        after = e.stats()["loop_parts_seconds"]["idle"]
    assert 0.25 <= after - before < 5
