"""Python's garbage collector as a server sees it: how long its pauses are, and startup's objects left alone.

A full collection walks every object the process holds, and while it runs no Python thread of the process
moves: in an engine that holds a model, a tokenizer and every stream's segments, one can take longer than a
whole step. `freeze_startup` (what a server calls once it has loaded everything) moves the objects that
exist then out of the collector's reach, so later collections walk only what serving made; `pauses()` says
what the collector cost so far.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections import deque

_lock = threading.Lock()
_started: float | None = None
_count = 0
_total_s = 0.0
_max_s = 0.0
_installed = False
# the last collections: (start, seconds, generation), start on time.monotonic (the clock of every process of the
# host), for a bench that asks which slow requests a pause overlapped
_recent: deque[tuple[float, float, int]] = deque(maxlen=4096)


def _callback(phase: str, info: dict) -> None:
    global _started, _count, _total_s, _max_s
    if phase == "start":
        _started = time.monotonic()
    elif _started is not None:
        took = time.monotonic() - _started
        _recent.append((_started, took, info.get("generation", -1)))
        _started = None
        with _lock:
            _count += 1
            _total_s += took
            _max_s = max(_max_s, took)


def watch() -> None:
    """Start timing the collector's pauses in this process (once; later calls do nothing)."""
    global _installed
    with _lock:
        if not _installed:
            gc.callbacks.append(_callback)
            _installed = True


def pauses() -> dict:
    """{"gc_collections", "gc_pause_seconds", "gc_pause_max_seconds"} since `watch()`."""
    with _lock:  # (the dict is made after the lock: a collection could run on its allocation, and its callback
        count, total, longest = _count, _total_s, _max_s  # takes the lock)
    return {"gc_collections": count, "gc_pause_seconds": total, "gc_pause_max_seconds": longest}


def recent_pauses() -> list[tuple[float, float, int]]:
    """The last 4,096 collections since `watch()`: (start on time.monotonic, seconds, generation)."""
    from .rings import snapshot

    return snapshot(_recent)


# a serving process's youngest-generation threshold (Python's default is 700 allocations): an engine step makes
# thousands of short-lived containers, so at 700 an engine process collected about once a step (0.6-1.2 ms each,
# every thread stopped: 3% of an engine process's time at 1,024 streams on an H100); at 20,000, 3 collections
# instead of 182-186 over 32 steps of bench/engine_host.py on the workplace VM (bench/RESULTS.md, session 52)
SERVING_GEN0_THRESHOLD = 20_000
GEN0_ENV = "STREAMRET_GC_GEN0"  # another threshold for the processes started with it set (700: Python's)


def serving_gen0_threshold() -> int:
    """SERVING_GEN0_THRESHOLD, or the positive int in $STREAMRET_GC_GEN0."""
    value = os.environ.get(GEN0_ENV, "")
    if not value:
        return SERVING_GEN0_THRESHOLD
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"{GEN0_ENV}={value!r}: give a positive number of allocations (Python's default is 700, "
                         f"a serving process's {SERVING_GEN0_THRESHOLD}), or unset it")
    return n


def freeze_startup() -> None:
    """Collect once, then keep every object that exists now out of later collections (a server's model,
    tokenizer, modules), and collect the youngest generation less often (`serving_gen0_threshold`): call when a
    process has loaded what it serves with."""
    gen0 = serving_gen0_threshold()
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(gen0, older, oldest)
