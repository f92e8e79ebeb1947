"""The engine lock, optionally profiled: who holds it, for how long, and how long its takers waited.

The step loop waits for the engine lock at the start of every step (stats()["loop_parts_seconds"]["lock"]); when
that wait is long, this says which callers held the lock. Off by default (a plain RLock); benches turn it on
with STREAMRET_LOCK_PROFILE=1 in the engine's environment, and stats()["lock_sites"] then holds, per call site
(file:function:line of the `with` that took it), the takes, seconds waited, seconds held and longest hold.
"""

from __future__ import annotations

import os
import sys
import threading
from time import perf_counter

ENV = "STREAMRET_LOCK_PROFILE"
_SKIP = (os.path.basename(threading.__file__), os.path.basename(__file__))


def engine_lock() -> threading.RLock | ProfiledRLock:
    """The engine's lock: profiled when STREAMRET_LOCK_PROFILE=1, a plain RLock otherwise."""
    return ProfiledRLock() if os.environ.get(ENV, "") == "1" else threading.RLock()


def _site() -> str:
    frame = sys._getframe(2)
    while frame is not None and os.path.basename(frame.f_code.co_filename) in _SKIP:
        frame = frame.f_back
    if frame is None:
        return "?"
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_code.co_name}:{frame.f_lineno}"


class ProfiledRLock:
    """An RLock (usable under threading.Condition) that books each outermost hold to the site that took it.
    The books are written while the lock is held, so they need no lock of their own."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._mine = threading.local()  # this thread's: depth, when it took the lock, its site
        self.sites: dict[str, list[float]] = {}  # site -> [takes, wait_s, held_s, max_held_s]

    def _took(self, waited_from: float, site: str, depth: int) -> None:
        now = perf_counter()
        mine = self._mine
        mine.depth, mine.since, mine.site = depth, now, site
        book = self.sites.get(site)
        if book is None:
            book = self.sites[site] = [0, 0.0, 0.0, 0.0]
        book[0] += 1
        book[1] += now - waited_from

    def _book_hold(self) -> None:
        held = perf_counter() - self._mine.since
        book = self.sites[self._mine.site]
        book[2] += held
        book[3] = max(book[3], held)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        t0 = perf_counter()
        if not self._lock.acquire(blocking, timeout):
            return False
        depth = getattr(self._mine, "depth", 0)
        if depth:
            self._mine.depth = depth + 1
        else:
            self._took(t0, _site(), 1)
        return True

    def release(self) -> None:
        depth = self._mine.depth - 1
        self._mine.depth = depth
        if not depth:
            self._book_hold()
        self._lock.release()

    __enter__ = acquire

    def __exit__(self, *exc) -> None:
        self.release()

    # threading.Condition's protocol: a wait gives the lock up whole and takes it back
    def _is_owned(self) -> bool:
        return self._lock._is_owned()

    def _release_save(self):
        self._book_hold()
        depth, site = self._mine.depth, self._mine.site
        self._mine.depth = 0
        return self._lock._release_save(), depth, site

    def _acquire_restore(self, saved) -> None:
        state, depth, site = saved
        t0 = perf_counter()
        self._lock._acquire_restore(state)
        self._took(t0, f"{site} (after a wait)", depth)

    def snapshot(self) -> dict[str, dict[str, float]]:
        """The books so far (call with the lock held)."""
        return {site: {"takes": b[0], "wait_s": b[1], "held_s": b[2], "max_held_s": b[3]}
                for site, b in self.sites.items()}
