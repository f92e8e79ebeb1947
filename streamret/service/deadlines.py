"""The running gRPC call's deadline, so that engine work is never started for a caller that has given up.

At the deadline grpc.aio cancels the call's handler; the engine work it had queued for an RPC thread is dropped
with it (a cancelled executor job does not run) and the gate logs the call as DEADLINE_EXCEEDED. That
cancellation reaches the event loop a moment after the deadline, though, and a thread that frees up in between
would start the work anyway; so the gate also records the deadline (from `context.time_remaining()`) for each
call and TenantEngine checks it on the RPC thread just before each piece of engine work starts, raising
DeadlineExceeded (answered as DEADLINE_EXCEEDED). Work that has started runs to its end. A ContextVar: the tasks
a call starts (an Append call's reader) inherit it.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar

from ..errors import DeadlineExceeded

log = logging.getLogger("streamret.service")

_deadline: ContextVar[float | None] = ContextVar("streamret_call_deadline", default=None)


def set_call_deadline(time_remaining_s: float | None) -> None:
    """The current call ends in this many seconds (None: it has no deadline)."""
    _deadline.set(None if time_remaining_s is None else time.monotonic() + time_remaining_s)


def call_deadline() -> float | None:
    """The current call's deadline on time.monotonic()'s clock, or None."""
    return _deadline.get()


def check_deadline(deadline: float | None, what: str) -> None:
    """Raise DeadlineExceeded when `deadline` (from call_deadline()) has passed: `what` is not started."""
    if deadline is None:
        return
    late_s = time.monotonic() - deadline
    if late_s >= 0:
        log.info("deadline passed %.0f ms ago: %s not started", late_s * 1000, what)
        raise DeadlineExceeded(f"the call's deadline passed before {what} started; nothing was done")
