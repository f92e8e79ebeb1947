"""STREAMRET_LOCK_PROFILE=1: the engine lock books its holders per call site (streamret/engine/lock_profile.py),
and engine processes' books add up (shards.merge_stats)."""

import threading
import time

from streamret.engine import Engine
from streamret.engine.lock_profile import ENV, ProfiledRLock
from streamret.engine.shards import merge_stats


def test_an_engine_with_the_profile_books_each_site_that_held_its_lock(monkeypatch):
    monkeypatch.setenv(ENV, "1")
    with Engine.from_model("random:tiny", device="cpu") as eng:
        for seq in range(1, 4):
            eng.append("s", seq, "a few words. " * 20)
        eng.embedding("s")
        sites = eng.stats()["lock_sites"]
    # submit_append takes the lock inside submit_appends (one chunk)
    appends = [book for site, book in sites.items() if site.startswith("engine.py:submit_appends:")]
    assert appends and appends[0]["takes"] == 3 and appends[0]["held_s"] > 0
    assert any(site.startswith("engine.py:embedding:") for site in sites)
    assert any(site.startswith("core.py:_steps_forever:") for site in sites)  # the step loop takes it too
    assert all(b["max_held_s"] <= b["held_s"] for b in sites.values())


def test_a_hold_is_booked_to_its_site_and_a_condition_wait_is_not_a_hold():
    lock = ProfiledRLock()
    ready = threading.Condition(lock)

    def hold() -> None:
        with lock:
            with lock:  # re-entered: one take
                time.sleep(0.05)

    hold()
    with lock:
        ready.wait(timeout=0.2)  # the lock is given up while waiting
    books = lock.snapshot()
    (site,) = [s for s in books if ":hold:" in s]
    assert books[site]["takes"] == 1 and 0.05 <= books[site]["held_s"] < 0.2
    waits = [b for s, b in books.items() if ":test_a_hold" in s and "after a wait" not in s]
    assert waits and waits[0]["held_s"] < 0.1  # the 0.2 s wait was not held


def test_books_of_engines_that_saw_different_sites_add_up():
    a = {"lock_sites": {"x": {"takes": 1, "wait_s": 0.1, "held_s": 0.5, "max_held_s": 0.5}}}
    b = {"lock_sites": {"x": {"takes": 2, "wait_s": 0.2, "held_s": 0.1, "max_held_s": 0.05},
                        "y": {"takes": 1, "wait_s": 0.0, "held_s": 0.3, "max_held_s": 0.3}}}
    merged = merge_stats([a, b])["lock_sites"]
    assert merged["x"] == {"takes": 3, "wait_s": 0.1 + 0.2, "held_s": 0.5 + 0.1, "max_held_s": 0.5}
    assert merged["y"]["held_s"] == 0.3
