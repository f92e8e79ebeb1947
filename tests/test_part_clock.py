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
