"""Engines still running when the interpreter exits are shut down before it tears itself down.

A script that makes an Engine and returns without `shutdown()` left the step loop and the durable writer (daemon
threads) running into interpreter finalization, where torch's and the tokenizer's native threads are destroyed
under them: about one run in six with the default model aborted with "terminate called without an active
exception" (exit code 134). An atexit callback runs before that teardown, while every thread still works.
"""

from __future__ import annotations

import atexit
import logging
import weakref
from typing import Protocol

log = logging.getLogger("streamret.engine")


class _Stoppable(Protocol):
    def shutdown(self, checkpoint: bool = True, timeout_s: float | None = None) -> object: ...


_running: weakref.WeakSet[_Stoppable] = weakref.WeakSet()


def shut_down_at_exit(engine: _Stoppable) -> None:
    """Shut `engine` down at interpreter exit unless it was shut down before (shutdown is idempotent). It writes
    what was applied, as a shutdown whose drain time is out does; chunks still queued then are dropped."""
    _running.add(engine)


def _shut_down_all() -> None:
    for engine in list(_running):
        try:
            engine.shutdown(timeout_s=0.0)
        except Exception:  # noqa: BLE001  (exiting anyway: say why, shut down the others)
            log.exception("shutting an engine down at exit failed")


atexit.register(_shut_down_all)
