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
launch and finish (core.py), not while it schedules or waits for work. On a GPU the finish includes waiting
for the device, and steps overlap (step k+1 is launched before step k is finished), so under load the short
interval holds most of the time: its cost falls on the other threads, which then also switch among
themselves every interval (bench/gil_handoff.py: 27-51% fewer rounds for pure-Python spinners).
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# the interval is the process's: sections of several threads (two engines in one process) overlap, so the
# first to enter keeps the interval it found and the last to leave puts it back, unless other code set one
# meanwhile (then that one stays: the process's choice, made while a section was open)
_lock = threading.Lock()
_holders = 0
_base = 0.0  # the process's own interval, to put back
_set = 0.0  # what the sections set


def switch_interval_s(value: object, name: str) -> float:
    """A GIL switch interval in seconds, checked: a number in (0, 1] (Python takes whole microseconds; longer
    than a second would let one thread starve the others). `name` says where the value came from in the error."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ValueError(f"{name}={value!r}: give a switch interval in (0, 1] seconds, e.g. 0.0001")
    return float(value)


def parse_switch_interval(text: str, name: str) -> float | None:
    """A switch interval as a flag or variable gives it: seconds in (0, 1], or "none" (None: leave the process's)."""
    if text.strip().lower() == "none":
        return None
    try:
        value: object = float(text)
    except ValueError:
        value = text
    return switch_interval_s(value, name)


def switch_interval_arg(flag: str) -> Callable[[str], float | None]:
    """`parse_switch_interval` as an argparse type for `flag` (its error shown as argparse shows a bad value)."""
    def parse(text: str) -> float | None:
        try:
            return parse_switch_interval(text, flag)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return parse


@contextmanager
def quick_handoff(interval_s: float | None) -> Iterator[None]:
    """Within the block the switch interval is at most interval_s (None: unchanged); the process's own is put
    back when the last block open in the process ends."""
    global _holders, _base, _set
    if interval_s is None:
        yield
        return
    with _lock:
        now = sys.getswitchinterval()
        if _holders == 0 or now != _set:  # the first section, or other code changed it since
            _base = now
        _holders += 1
        _set = min(interval_s, now)
        sys.setswitchinterval(_set)
        _set = sys.getswitchinterval()  # (as Python stores it: whole microseconds)
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and sys.getswitchinterval() == _set:
                sys.setswitchinterval(_base)
