"""The durability policy: when a stream's record is written, and what the acks that wait for it say.

A record is due after `durable_every_chunks` applied chunks of a stream, when a chunk asks for one
(`durable=True`), when the stream's oldest change not yet durable is older than `durable_every_s` (a
sweep on the step loop), and at a checkpoint. The writer (writer.py) writes it off the step loop; the
acks that wait for it go out once it is written, or fail with DurableWriteFailed.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING

from ...errors import DurableWriteFailed, StreamRetError
from ..acks import AckWaiter, reject, resolve
from ..config import Ack, EngineConfig
from ..record import StreamCodec
from ..scheduler import WorkItem
from ..stream import Stream
from .store import DurableStore
from .writer import DurableWriter

if TYPE_CHECKING:  # (state_store imports this package for DurableStore)
    from ..state_store import StateStore

log = logging.getLogger("streamret.engine")


class DurabilityPolicy:
    """Decides and hands out the engine's durable writes. Every method but `drain`, `close` and `writable`
    is called with the engine lock held; the writer's callbacks take it."""

    def __init__(self, config: EngineConfig, store: DurableStore | None, codec: StreamCodec, states: StateStore,
                 lock: threading.RLock):
        self.store = store
        self.writer = DurableWriter(store) if store is not None else None
        self.every_chunks = config.durable_every_chunks
        self.every_s = config.durable_every_s
        self._codec = codec
        self._states = states
        self._lock = lock
        self._next_sweep = time.monotonic()

    def book(self, done: dict[Stream, list[WorkItem]]
             ) -> tuple[list[tuple[Future, Ack]], list[tuple[Stream, list[WorkItem]]]]:
        """The acks of the items a step applied, per stream: those to send now, and the records due now with the
        items whose acks wait for them, which the caller hands to `write` once it has booked the step's segments
        (a record holds the stream's kept segments); those acks go out once the record is written."""
        resolved, records = [], []
        every = self.every_chunks
        for stream, items in done.items():
            policy = bool(every) and stream.since_durable >= every and not stream.ephemeral
            asked = [it for it in items if it.durable]
            if self.store is not None and (policy or asked or stream.owed_record):
                # acks go out once the record is written (the scheduler ends a stream's work at a chunk
                # boundary whenever it completes one, so the state here is the state after applied_seq);
                # when only some chunks asked for it, the others are acked now, as in a step of their own
                waiting = items if policy else asked
                owed, stream.owed_record = stream.owed_record, []
                resolved += [(it.future, stream.ack(it.seq)) for it in items if it not in waiting]
                records.append((stream, [*waiting, *owed]))
            else:
                resolved += [(it.future, stream.ack(it.seq)) for it in items]
        return resolved, records

    def write(self, stream: Stream, items: list[WorkItem | AckWaiter]) -> None:
        """Hand a snapshot of the stream's applied side to the writer; ack `items` once it is written.

        A record holds the state after exactly the chunks up to applied_seq: one taken while the state holds
        part of the next chunk (split across steps) would, after a restart, apply that part twice (issue 15,
        item 1). Such a write waits, with `items`, for the step that completes the chunk (`book`)."""
        if not stream.at_boundary:
            stream.owed_record.extend(items)
            return
        meta, tensors = self._codec.snapshot(stream, self._states.read(stream.id))
        stream.recorded = True
        changes = stream.since_durable
        stream.since_durable = 0
        stream.durable_time = time.monotonic()
        applied_seq = stream.applied_seq

        def written(error: Exception | None) -> None:
            with self._lock:
                if error is None:
                    stream.durable_seq = max(stream.durable_seq, applied_seq)
                    acks = [(it.future, stream.ack(it.seq)) for it in items]
                else:  # an ack that waited for this record must not claim success: it carries the error
                    log.error("durable write of stream %r failed: %s", stream.id, error)
                    stream.since_durable += max(changes, 1)  # still to write (next policy turn, or shutdown)
                    failed = [(it.future, self.not_durable(stream, it.seq, error)) for it in items]
            if error is None:
                for fut, ack in acks:
                    resolve(fut, ack)
            else:
                for fut, exc in failed:
                    reject(fut, exc)

        self.writer.submit(stream.id, stream.revision, meta, tensors, written, group=stream.group)

    def record_eviction(self, stream: Stream, state) -> Future:
        """Hand an evicted stream's record to the writer (lock held); the state store hears when it is written
        (`StateStore.evict_written`), so that the step that evicted it never waits on storage. The future
        settles then (with the write's error, if any) for a caller that must wait (close with keep_state)."""
        meta, tensors = self._codec.snapshot(stream, state)
        done: Future = Future()

        def written(error: Exception | None) -> None:
            with self._lock:
                self._states.evict_written(stream, error)
            if error is None:
                resolve(done, None)
            else:
                reject(done, error)

        self.writer.submit(stream.id, stream.revision, meta, tensors, written, group=stream.group)
        return done

    @staticmethod
    def not_durable(stream: Stream, seq: int | None, error: Exception) -> DurableWriteFailed:
        """The error of a chunk that was applied but whose durable record could not be written."""
        what = "a flush" if seq is None else f"chunk {seq}"
        reason = str(error) if isinstance(error, StreamRetError) else type(error).__name__
        return DurableWriteFailed(
            f"{what} of stream {stream.id!r} was applied (applied_seq {stream.applied_seq}) but is not durable: "
            f"{reason}. durable_seq stays {stream.durable_seq}: keep the chunks after it, and resend the last one "
            "with durable=true to write the record again")

    def sweep_due(self) -> float | None:
        """Seconds until the next time-policy sweep (None: no sweep is ever due)."""
        every = self.every_s
        return None if every is None or self.store is None else max(0.0, self._next_sweep - time.monotonic())

    def sweep(self) -> None:
        """Time policy: write streams whose last durable record is older than durable_every_s."""
        every = self.every_s
        now = time.monotonic()
        if every is None or self.store is None or now < self._next_sweep:
            return
        self._next_sweep = now + every / 4
        for stream in self._states.streams.values():
            # a stream in the middle of a long chunk waits: the step that completes the chunk ends at its
            # boundary, and this sweep runs right after that step
            if stream.since_durable and now - stream.durable_time >= every and stream.at_boundary \
                    and not stream.ephemeral:
                self.write(stream, [])

    def write_all(self) -> int:
        """Hand every resident stream with changes not yet durable (at a chunk boundary) to the writer;
        returns how many."""
        written = 0
        if self.store is not None:
            for stream in self._states.streams.values():
                if stream.since_durable and stream.at_boundary and not stream.ephemeral:
                    self.write(stream, [])
                    written += 1
        return written

    def drain(self) -> None:
        """Wait until every record handed to the writer is written (or refused). Without the engine lock."""
        if self.writer is not None:
            self.writer.drain()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def writable(self) -> bool | None:
        """False while the durable store refuses writes (probed here until it takes them again), None without
        one. Without the engine lock: a probe writes to storage."""
        if self.store is None:
            return None
        return self.store.writable or self.store.probe()
