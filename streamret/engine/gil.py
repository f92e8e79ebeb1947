"""A short GIL switch interval while the step thread calls into torch and numpy.

Every torch call from Python releases the GIL around its work (PyTorch's bindings do so even for a view),
numpy does for larger arrays, and both take it back afterwards. When other threads of the process are busy
in Python (an engine's tokenize threads, the reader of the fronts' connections, the gRPC threads of an
in-process engine), taking it back waits until the holder gives it up: at the end of its switch interval,
5 ms by default. So each such call of the step thread can cost up to 5 ms under load, although it needs
microseconds: on the CPU with two busy Python threads a slice and view of a tensor took 1.7 ms at the
default interval and 9.5 us at 100 us (bench/gil_handoff.py; bench/RESULTS.md, "The step thread's torch
calls and the GIL"). A step makes dozens (gathering states, uploading inputs, replaying a graph, pooling,
downloading outputs, scattering states, booking segments with numpy).

`quick_handoff` lowers the process's interval for the length of such a section and restores it after: the
other threads then hand the GIL back within the short interval. The engine holds it over a step's gather,
launch and finish (core.py), not while it schedules or waits for work.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# the interval is the process's: sections of several threads (two engines in one process) overlap, so the
# first to enter keeps the interval it found and the last to leave puts it back
_lock = threading.Lock()
_holders = 0
_base = 0.0


@contextmanager
def quick_handoff(interval_s: float | None) -> Iterator[None]:
    """Within the block the switch interval is at most interval_s (None: unchanged); restored after the last
    block open in the process ends."""
    global _holders, _base
    if interval_s is None:
        yield
        return
    with _lock:
        if _holders == 0:
            _base = sys.getswitchinterval()
        _holders += 1
        sys.setswitchinterval(min(interval_s, sys.getswitchinterval()))
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                sys.setswitchinterval(_base)
