"""Intake: a caller's chunk becomes queued work, in its stream's order.

`accept` (engine lock held) counts a chunk's WorkItem against the queue bounds and links it to its stream's
text front: the item before it, or the stream's applied text when none is unapplied. Once the lock is let go
the engine hands the item to the tokenize stage (tokenize_stage.py: engine threads, or processes of theirs,
cut its text into pieces and tokenize many items per call; an engine process's pipe batch of chunks goes in
one hand-over, Engine.submit_appends), which brings it back to `tokenized`: queued with the scheduler, and
every later item of its stream that waited for it. A chunk accepted before is answered by `duplicate`: acked
again, never applied twice.
"""

from __future__ import annotations

import dataclasses
import threading
from concurrent.futures import Future

from ..errors import DurableWriteFailed, Unavailable
from .acks import AckWaiter, reject, resolve
from .durability.policy import DurabilityPolicy
from .scheduler import Scheduler, WorkItem
from .state_store import StateStore
from .stream import Stream
from .tokenize_stage import Tokenized


def _what(item: WorkItem) -> str:
    return "a flush" if item.seq is None else f"chunk {item.seq}"


class Intake:
    def __init__(self, lock: threading.RLock, has_work: threading.Condition, applied: threading.Condition,
                 scheduler: Scheduler, states: StateStore, durability: DurabilityPolicy):
        self._lock = lock
        self._has_work = has_work  # the step loop waits here for queued work
        self._applied = applied  # callers wait here for their items to leave a stream's queue
        self._scheduler = scheduler
        self._states = states
        self._durability = durability

    def accept(self, stream: Stream, seq: int | None, raw: bytes, flush: bool = False, close: bool = False,
               durable: bool = False) -> WorkItem:
        """A chunk (or a flush, or the stream's close: raw b"") -> an accepted WorkItem, counted against the queue
        bounds but not cut or tokenized yet (the tokenize stage does that, without the lock). Called with the lock
        held."""
        self._scheduler.check_room(stream.id, len(raw))
        prev = stream.pending[-1] if stream.pending else None  # its text ends where this one's starts
        item = WorkItem(stream.id, seq, None, None, None, None, len(raw), durable=durable,
                        split_after=self._split_after(stream, durable),
                        text_before=None if prev is not None else stream.applied_text, prev=prev, raw=raw,
                        ending="close" if close else "flush" if flush else "", accepted_before=stream.accepted_seq,
                        group=stream.group)
        self._scheduler.reserve(item)
        stream.pending.append(item)
        if seq is not None:
            stream.accepted_seq = seq
        return item

    def _split_after(self, stream: Stream, durable: bool) -> bool:
        """WorkItem.split_after of the stream's chunk: a step that completes it may end inside the next chunk where
        no record will want the state at its end (a read that comes while the state holds part of a chunk ends the
        stream's work at the next boundary: EngineCore._settled): in an engine without a durable store, or for a
        temporary stream's chunk that asks for none."""
        return self._durability.store is None or (stream.ephemeral and not durable)

    def tokenized(self, results: list[tuple[WorkItem, Tokenized | BaseException]]) -> None:
        """A batch of items back from the tokenize stage: queue each item, and the later items of its stream
        that were waiting for it, in order. A failed item takes its stream's front back to before it: it
        fails with the error, and the items accepted after it fail as resendable."""
        with self._lock:
            for item, result in results:
                stream = self._states.streams.get(item.stream_id)
                if stream is None or item not in stream.pending:
                    continue  # the stream failed or shut down meanwhile: the item's future is settled
                if isinstance(result, BaseException):
                    self._drop_from(stream, item, result)
                    continue
                item.raw = b""  # cut: its pieces are in its layout
                item.set_tokens(result.tokens, result.ends, result.layout)
                for waiting in stream.pending:  # in order: an item waits for every earlier one
                    if waiting.queued:
                        continue
                    if waiting.tokens is None:
                        break
                    self._scheduler.enqueue(waiting)
            self._has_work.notify_all()

    def _drop_from(self, stream: Stream, item: WorkItem, error: BaseException) -> None:
        """Undo the acceptance of `item` and of every item accepted after it (none of them is queued)."""
        while True:
            last = stream.pending.pop()
            self._scheduler.complete(last)
            if last is item:
                break
            reject(last.future, Unavailable(
                f"{_what(last)} of stream {stream.id!r} was not applied: {_what(item)} before it failed "
                f"({error}); resend from seq {item.accepted_before + 1}"))
        stream.accepted_seq = item.accepted_before  # (its text front: the item before it, or the applied text)
        reject(item.future, error)
        self._applied.notify_all()  # waiters for the stream's last item re-check

    def duplicate(self, stream: Stream, seq: int, durable: bool = False) -> Future:
        """The ack of chunk `seq` accepted before (lock held): once it is applied, flagged duplicate; with
        `durable`, once a record covers it."""
        out: Future = Future()
        if seq <= stream.applied_seq:
            if durable and self._durability.store is not None and stream.durable_seq < seq:
                # a resent last chunk that must be durable: write the record, then ack it as a duplicate
                written: Future = Future()

                def after_write(f: Future) -> None:
                    if f.exception() is not None:
                        reject(out, f.exception())
                    else:
                        resolve(out, dataclasses.replace(f.result(), duplicate=True))

                written.add_done_callback(after_write)
                self._durability.write(stream, [AckWaiter(written, seq)])  # waits for a chunk boundary
            else:
                resolve(out, dataclasses.replace(stream.ack(seq), duplicate=True))
            return out
        original = next(it for it in stream.pending if it.seq == seq)
        original.durable |= durable
        original.split_after &= self._split_after(stream, durable)  # (it may ask for a record now)

        def relay(f: Future) -> None:
            if not f.cancelled() and isinstance(f.exception(), DurableWriteFailed):
                reject(out, f.exception())  # applied, not durable: the original's error says so
            elif f.cancelled() or f.exception() is not None:
                reject(out, Unavailable(f"chunk {seq} of stream {stream.id!r} was not applied; resend it"))
            else:
                resolve(out, dataclasses.replace(f.result(), duplicate=True))

        original.future.add_done_callback(relay)
        return out
