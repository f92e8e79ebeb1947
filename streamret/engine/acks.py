"""Answers to callers: their futures are settled from the step loop, the writer and the intake alike."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass


def resolve(fut: Future, value) -> None:
    """Set a result unless the caller already gave up on the future (a client that hung up)."""
    if not fut.done():
        fut.set_result(value)


def reject(fut: Future, error: BaseException) -> None:
    if not fut.done():
        fut.set_exception(error)


@dataclass(frozen=True)
class AckWaiter:
    """What a durable write acks once the record is written, when no WorkItem is waiting (a duplicate)."""

    future: Future
    seq: int
