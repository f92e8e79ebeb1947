"""Intake: a caller's chunk becomes queued work, in its stream's order.

`accept` (engine lock held) feeds the chunk's bytes to the stream's text front (text.py) and counts a
WorkItem against the queue bounds; `tokenize` (without the lock, so that steps are planned and booked
meanwhile, and a native tokenizer runs beside them) turns its pieces into tokens and queues it, and
every later item of its stream that waited for it, with the scheduler. A chunk accepted before is
answered by `duplicate`: acked again, never applied twice.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from concurrent.futures import Future

import numpy as np

from ..errors import DurableWriteFailed, InvalidArgument, Unavailable
from ..model.tokenizer import Tokenizer
from .acks import AckWaiter, reject, resolve
from .durability.policy import DurabilityPolicy
from .record import StreamCodec
from .scheduler import PieceLayout, Scheduler, WorkItem
from .stream import Stream


def _what(item: WorkItem) -> str:
    return "a flush" if item.seq is None else f"chunk {item.seq}"


class Intake:
    def __init__(self, lock: threading.RLock, has_work: threading.Condition, applied: threading.Condition,
                 scheduler: Scheduler, codec: StreamCodec, tokenizer: Tokenizer, vocab_size: int,
                 durability: DurabilityPolicy):
        self._lock = lock
        self._has_work = has_work  # the step loop waits here for queued work
        self._applied = applied  # callers wait here for their items to leave a stream's queue
        self._scheduler = scheduler
        self._codec = codec
        self._tokenizer = tokenizer
        self._vocab_size = vocab_size
        self._durability = durability

    def accept(self, stream: Stream, seq: int | None, raw: bytes, flush: bool = False, close: bool = False,
               durable: bool = False) -> WorkItem:
        """Text -> pieces -> an accepted WorkItem, counted against the queue bounds but not tokenized yet
        (`tokenize` does that, without the lock). Called with the lock held."""
        self._scheduler.check_room(stream.id, len(raw))
        before = stream.text.snapshot()
        try:
            pieces = stream.text.close() if close else stream.text.feed(raw, flush)
        except BaseException:
            stream.text = self._codec.new_assembler(before)
            raise
        item = WorkItem(stream.id, seq, None, pieces, None, stream.text.snapshot(), len(raw), durable=durable,
                        text_before=before, accepted_before=stream.accepted_seq, group=stream.group)
        self._scheduler.reserve(item)
        stream.pending.append(item)
        if seq is not None:
            stream.accepted_seq = seq
        return item

    def tokenize(self, stream: Stream, item: WorkItem) -> WorkItem:
        """Tokenize an accepted item (without the lock), then queue it and any later items of its stream
        that were waiting for it. A failure takes the stream's front back to before the item: the item
        fails with the error, which is raised here too, and items accepted after it fail as resendable."""
        error = None
        try:
            ids = self._tokenizer.encode_batch([p.text for p in item.pieces]) if item.pieces else []
            tokens = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64)
            if tokens.size and (tokens.min() < 0 or tokens.max() >= self._vocab_size):
                raise InvalidArgument(
                    f"the tokenizer produced ids outside the model's vocabulary [0, {self._vocab_size}); "
                    "the engine's tokenizer and model do not belong together"
                )
            ends = np.cumsum([len(t) for t in ids], dtype=np.int64)
            layout = PieceLayout.of(item.pieces, ends)  # without the lock
        except BaseException as e:  # handed to the caller and to the item's future below; never left half-accepted
            error = e
        with self._lock:
            if item not in stream.pending:
                return item  # the stream failed or shut down meanwhile: the item's future is settled
            if error is not None:
                self._drop_from(stream, item, error)
                raise error
            item.set_tokens(tokens, ends, layout)
            for waiting in stream.pending:  # in order: an item waits for every earlier one
                if waiting.queued:
                    continue
                if waiting.tokens is None:
                    break
                self._scheduler.enqueue(waiting)
            self._has_work.notify_all()
        return item

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
        stream.text = self._codec.new_assembler(item.text_before)
        stream.accepted_seq = item.accepted_before
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

        def relay(f: Future) -> None:
            if not f.cancelled() and isinstance(f.exception(), DurableWriteFailed):
                reject(out, f.exception())  # applied, not durable: the original's error says so
            elif f.cancelled() or f.exception() is not None:
                reject(out, Unavailable(f"chunk {seq} of stream {stream.id!r} was not applied; resend it"))
            else:
                resolve(out, dataclasses.replace(f.result(), duplicate=True))

        original.future.add_done_callback(relay)
        return out
