"""Give the server's freed heap memory back to the OS after large requests (glibc; elsewhere a no-op).

Two leaks of RSS that are not leaks of memory:
- glibc raises its mmap threshold at each large free (up to 32 MiB), and from then on request-sized buffers
  (imports, Arrow tables, their copies) come from the threads' malloc arenas, which keep them:
  `return_large_buffers_to_the_os` fixes the threshold at 1 MiB, so each such buffer is its own mapping.
- a request of megabytes still arrives through gRPC's receive buffers, many allocations under that
  threshold, from the arenas of gRPC's threads; freed, they stay there, fragmented. Measured (the imports
  abuse of tests/test_abuse.py, 8 MiB records that are refused): 8 importers at once left the server
  +35 to +194 MiB above where it started after they stopped; `malloc_trim(0)` brought it back to within
  2 MiB. So `HeapTrimmer` trims once large requests came and their calls ended, on its own thread (the event
  loop never waits for it), at most once per `min_interval_s`.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time

log = logging.getLogger("streamret.service")

LARGE_REQUEST_BYTES = 1 << 20  # glibc's mmap threshold, fixed here: smaller allocations come from its arenas


def _libc_function(name: str):
    try:
        return getattr(ctypes.CDLL("libc.so.6"), name)
    except (OSError, AttributeError):  # not glibc: its allocator has its own policy
        return None


def return_large_buffers_to_the_os() -> None:
    """Fix glibc's mmap threshold at LARGE_REQUEST_BYTES: every buffer that large is its own mapping, given back
    to the OS when freed (by default the threshold rises with each large free, and those buffers then stay in
    the arenas: a tenant importing 8 MiB garbage in a loop grew the server by 600 MiB)."""
    mallopt = _libc_function("mallopt")
    if mallopt is not None:
        mallopt(-3, LARGE_REQUEST_BYTES)  # M_MMAP_THRESHOLD


class HeapTrimmer:
    """`saw(n)` for each request message of n bytes as it arrives, `call_ended()` as any call ends: the heap
    is trimmed `settle_s` after a call ends that follows a large request (the request's buffers are freed as
    gRPC sends the status, just after the handler returns), and again while large requests keep coming."""

    def __init__(self, large_bytes: int = LARGE_REQUEST_BYTES, settle_s: float = 0.05, min_interval_s: float = 0.25):
        self.large_bytes, self.settle_s, self.min_interval_s = large_bytes, settle_s, min_interval_s
        self.trims = 0
        self._trim = _libc_function("malloc_trim")
        self._large_seen = False
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None

    @property
    def available(self) -> bool:
        """False where the C library has no malloc_trim (not glibc): then saw() and call_ended() do nothing."""
        return self._trim is not None

    def start(self) -> HeapTrimmer:
        if self._trim is not None and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="streamret-heap-trim", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def saw(self, nbytes: int) -> None:
        if nbytes >= self.large_bytes:
            self._large_seen = True

    def call_ended(self) -> None:
        if self._large_seen:
            self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            if self._stopped:
                return
            time.sleep(self.settle_s)
            self._wake.clear()
            self._large_seen = False  # a large request arriving from now on asks for the next trim
            started = time.perf_counter()
            self._trim(0)
            self.trims += 1
            took = time.perf_counter() - started
            log.debug("heap trimmed after large requests in %.1f ms", took * 1e3)
            time.sleep(max(0.0, self.min_interval_s - self.settle_s - took))
