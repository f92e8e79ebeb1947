"""The runner that drives documents through an engine as temporary streams (embed_table's, and each engine
process's for its sub-batches: sub_batches.py), without pyarrow: an engine process imports it for its first
batch, and importing pyarrow there (0.36 s of a core on the workplace VM) held each engine process's first
sub-batch of a batch job, about 5.5 CPU-seconds over 12 engine processes on the H200 (bench/RESULTS.md,
session 26)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import StreamRetError, TooBusy

if TYPE_CHECKING:
    from ..engine.api import EngineAPI

log = logging.getLogger("streamret.batch")

DEFAULT_WINDOW = 4  # chunks of one document queued in the engine at once


@dataclass
class _Doc:
    row: int
    stream_id: str
    data: bytes
    chunk_bytes: int
    sent: int = 0  # chunks submitted (the seq of the last one)
    acked: int = 0
    opened: bool = False
    finished: bool = False  # its row is done (results read, or failed): acks still in flight are dropped
    bytes_done: int = 0  # of data, reported to on_bytes
    tokens: int = 0
    embedding: np.ndarray | None = None
    summary: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def n_chunks(self) -> int:
        return max(1, -(-len(self.data) // self.chunk_bytes))

    def chunk(self, seq: int) -> bytes:
        return self.data[(seq - 1) * self.chunk_bytes : seq * self.chunk_bytes]


def _describe(exc: BaseException, doc: _Doc) -> str:
    """A row's error: the status name and the engine's message, naming the row instead of its temporary stream.
    Anything else is a bug: the row says INTERNAL and the log has the traceback."""
    if not isinstance(exc, StreamRetError):
        log.error("row %d failed inside the engine", doc.row, exc_info=exc)
        return f"INTERNAL: {type(exc).__name__}"
    message = str(exc)
    for name in (repr(doc.stream_id), repr(doc.stream_id)[1:-1], doc.stream_id):
        message = message.replace(name, f"row {doc.row}")
    return f"{exc.code}: {message}"


class _Ended:
    """A call the runner made on its own thread (call_threads=0), ended: what the runner reads of a call's Future,
    without one. Each Future makes a threading.Condition, and `Future.__init__` was in a fifth of the runner thread's
    samples on short documents, three of a document's five Futures being these (bench/RESULTS.md, session 51)."""

    __slots__ = ("_error",)

    def __init__(self, error: BaseException | None = None):
        self._error = error

    def exception(self) -> BaseException | None:
        return self._error

    def cancel(self) -> bool:
        return False  # (it ran already)


class Stop:
    """When a batch must stop early: at a deadline (time.monotonic() seconds), or once `cancel()` is called
    (the client went away). Thread-safe; `reason()` is None while the batch may go on."""

    def __init__(self, deadline: float | None = None):
        self.deadline = deadline
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()

    def reason(self) -> str | None:
        if self._cancelled.is_set():
            return "CANCELLED: the call was cancelled before this row was done"
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return "DEADLINE_EXCEEDED: the call's deadline passed before this row was done; send it again"
        return None


class _Runner:
    """Drives documents through the engine: up to `window` pending chunks per document (so that a long document's
    next chunk is queued before the previous one is acknowledged, and the engine never waits for a round trip
    between them), many documents at once, at most max_in_flight documents and max_bytes_in_flight bytes of
    chunks queued in the engine.

    This thread only sends chunks and takes their acks. A document's other engine calls (opening its stream;
    once its last chunk is acked, its embedding and summary, then closing it) run on `call_threads` threads of
    their own: over a pipe or a network each call is a round trip, and a driver that made them itself would feed
    one document at a time. Documents whose calls are running count against max_in_flight (their streams are
    still held). call_threads=0: this thread makes them, for an engine whose calls return at once
    (calls_return_at_once; a close too: see Engine.close); threads of their own there only took the engine lock
    and the GIL from the step loop, dozens of them at once."""

    def __init__(self, engine: EngineAPI, docs: list[_Doc], summary_k: int, max_in_flight: int,
                 on_row_done: Callable[[_Doc], None] | None = None, on_bytes: Callable[[int], None] | None = None,
                 *, max_bytes_in_flight: int | None = None, group: str | None = None, stop: Stop | None = None,
                 call_threads: int = 16, window: int = DEFAULT_WINDOW):
        self.engine = engine
        self.docs = docs
        self.on_row_done = on_row_done
        self.on_bytes = on_bytes
        self.max_bytes_in_flight = max_bytes_in_flight
        self.bytes_in_flight = 0
        self.group = group  # the scheduler's fairness group of the temporaries (the tenant)
        self.stop = stop
        self.call_threads = call_threads
        self.window = window
        self._calls = ThreadPoolExecutor(max_workers=call_threads, thread_name_prefix="streamret-batch-call") \
            if call_threads else None
        self._ended_futures: queue.SimpleQueue[Future] = queue.SimpleQueue()  # acks and calls that ended, in that order
        self.calling: dict[Future, tuple[str, _Doc]] = {}  # ("open" | "finish" | "close", doc) running
        self.opening = 0  # of those, opens: no more are queued than threads run them (a stop waits for them)
        self.closing = 0  # of those, closes
        self.opened: dict[str, _Doc] = {}  # open temporary streams, closed whatever happens
        self.waiting = deque(docs)
        self.pending: dict[Future, tuple[_Doc, int]] = {}  # a chunk's ack -> (its document, its seq)
        self.blocked: deque[_Doc] = deque()  # refused by a full engine; retried when work completes
        self.hungry: deque[_Doc] = deque()  # held back by max_bytes_in_flight with chunks in flight; fed on acks
        self.summary_k = summary_k
        self.max_in_flight = max_in_flight

    def run(self) -> None:
        try:
            self._drive()
        finally:
            if self._calls is not None:
                self._calls.shutdown(wait=True)  # every temporary stream is closed before run returns
            for doc in self.docs:  # a row the engine never finished says why (none does, unless stopped)
                if doc.embedding is None and doc.error is None:
                    doc.error = self.why

    def _room(self) -> bool:
        if self.opening + len(self.opened) + self.closing >= self.max_in_flight:
            return False
        if self.call_threads and self.opening >= self.call_threads:
            return False
        # one document always fits, however large its first chunk (a document being opened counts its first chunk)
        return (self.max_bytes_in_flight is None or not (self.pending or self.opening)
                or self.bytes_in_flight < self.max_bytes_in_flight)

    def _drive(self) -> None:
        self.why = "INTERNAL: the batch was interrupted"
        try:
            while self.waiting or self.pending or self.blocked or self._feeding():
                if self.stop is not None and self.stop.reason() is not None:
                    break  # stop feeding; the chunks queued finish and every temporary is closed below
                while self.waiting and self._room():
                    self._start(self.waiting.popleft())
                for _ in range(len(self.blocked)):
                    self._feed(self.blocked.popleft())
                if self.pending or self.calling:  # an ack, or a call that ends (a close makes room)
                    # a stoppable batch looks at its deadline and cancellation at least every 50 ms
                    timeout = 0.01 if self.blocked else 0.05 if self.stop is not None else None
                    for fut in self._ended(timeout):
                        if fut in self.pending:
                            self._on_ack(fut, *self.pending.pop(fut))
                        else:
                            self._called(fut, *self.calling.pop(fut))
                    for _ in range(len(self.hungry)):  # bytes went back: documents held back by them go on
                        self._feed(self.hungry.popleft())
                elif self.blocked:
                    time.sleep(0.002)  # the engine is full of other callers' work
        finally:
            if self.stop is not None and (reason := self.stop.reason()) is not None:
                self.why = reason
            why = self.why
            opens = [f for f, (what, _) in self.calling.items() if what == "open"]
            for f in opens:
                if f.cancel():  # not started: its stream was never opened
                    self.calling[f][1].error = why
            wait([f for f in opens if isinstance(f, Future)])  # then every open stream is known
            for doc, _ in self.pending.values():
                doc.error = doc.error or why
            for doc in [*self.blocked, *self.waiting]:
                doc.error = doc.error or why
            for doc in list(self.opened.values()):  # also one caught between open and its first chunk
                doc.error = doc.error or why
                self._close(doc)

    def _ended(self, timeout: float | None) -> list[Future]:
        """The futures (acks and calls) done since last asked, waiting up to `timeout` for the first. Each
        future puts itself in a queue when done: concurrent.futures.wait scans every future in flight and puts
        a waiter on each at every turn, and with fast steps a turn comes for nearly every ack and call."""
        try:
            done = [self._ended_futures.get(timeout=timeout)]
        except queue.Empty:
            return []
        while True:
            try:
                done.append(self._ended_futures.get_nowait())
            except queue.Empty:
                return done

    def _feeding(self) -> bool:
        """Calls whose end sends a chunk (an open) or finishes a row (the last results) are running."""
        return self.opening > 0 or any(what == "finish" for what, _ in self.calling.values())

    def _call(self, what: str, doc: _Doc, fn: Callable[[], None]) -> None:
        if self._calls is None:  # made here (call_threads=0); handled with the other ended futures
            try:
                fn()
                ended = _Ended()
            except Exception as e:  # noqa: BLE001  (the row's error, as a call thread's would be)
                ended = _Ended(e)
            self.calling[ended] = (what, doc)
            self._ended_futures.put(ended)
            return
        fut = self._calls.submit(fn)
        self.calling[fut] = (what, doc)
        fut.add_done_callback(self._ended_futures.put)

    def _start(self, doc: _Doc) -> None:
        def open_stream() -> None:
            self.engine.open(doc.stream_id, create_if_missing=True, group=self.group, durable=False)
            doc.opened = True
            self.opened[doc.stream_id] = doc

        self.opening += 1
        self.bytes_in_flight += len(doc.chunk(1))  # its first chunk, sent once it is open
        self._call("open", doc, open_stream)

    def _called(self, fut: Future, what: str, doc: _Doc) -> None:
        """A document's call ended (on this thread): go on with the document."""
        if what == "open":
            self.opening -= 1
            self.bytes_in_flight -= len(doc.chunk(1))  # _feed counts it again
            if fut.exception() is not None:  # one row fails, the job goes on
                doc.error = _describe(fut.exception(), doc)
                self._done(doc)
            elif self.stop is None or self.stop.reason() is None:
                self._feed(doc)
        elif what == "finish":
            if fut.exception() is not None:
                doc.error = _describe(fut.exception(), doc)
            self._close(doc)
            self._done(doc)
        else:
            self.closing -= 1

    def _feed(self, doc: _Doc) -> None:
        """Send the document's next chunks, up to `window` unacknowledged, within max_bytes_in_flight (a document
        with none in flight sends one whatever its size)."""
        while not doc.finished and doc.sent < doc.n_chunks and doc.sent - doc.acked < self.window:
            seq = doc.sent + 1
            size = len(doc.chunk(seq))
            if (self.max_bytes_in_flight is not None and doc.sent > doc.acked
                    and self.bytes_in_flight + size > self.max_bytes_in_flight):
                self.hungry.append(doc)
                return
            try:
                fut = self.engine.submit_append(doc.stream_id, seq, doc.chunk(seq), flush=seq == doc.n_chunks)
            except TooBusy:
                self.blocked.append(doc)
                return
            except Exception as e:  # noqa: BLE001
                self._fail(doc, e)
                return
            doc.sent = seq
            self.pending[fut] = (doc, seq)
            self.bytes_in_flight += size
            fut.add_done_callback(self._ended_futures.put)

    def _on_ack(self, fut: Future, doc: _Doc, seq: int) -> None:
        self.bytes_in_flight -= len(doc.chunk(seq))
        if doc.finished:  # failed meanwhile: the acks of its later chunks say nothing new
            return
        try:
            ack = fut.result()
        except Exception as e:  # noqa: BLE001
            self._fail(doc, e)
            return
        doc.acked += 1
        doc.tokens = max(doc.tokens, int(ack.tokens))
        self._bytes_done(doc, len(doc.chunk(seq)))
        if doc.acked < doc.n_chunks:
            self._feed(doc)
            return

        def results() -> None:
            doc.embedding = np.asarray(self.engine.embedding(doc.stream_id), dtype=np.float32)
            if self.summary_k > 0:
                doc.summary = [s.text for s in self.engine.summarize(doc.stream_id, k=self.summary_k).segments]

        self._call("finish", doc, results)

    def _fail(self, doc: _Doc, exc: BaseException) -> None:
        doc.error = _describe(exc, doc)
        self._close(doc)
        self._done(doc)

    def _done(self, doc: _Doc) -> None:
        doc.finished = True
        self._bytes_done(doc, len(doc.data) - doc.bytes_done)  # a failed row's bytes count as done too
        if self.on_row_done is not None:
            self.on_row_done(doc)

    def _bytes_done(self, doc: _Doc, n: int) -> None:
        doc.bytes_done += n
        if self.on_bytes is not None and n:
            self.on_bytes(n)

    def _close(self, doc: _Doc) -> None:
        if doc.opened:
            doc.opened = False
            del self.opened[doc.stream_id]
            self.closing += 1
            self._call("close", doc, lambda: self._close_now(doc.stream_id))

    def _close_now(self, stream_id: str) -> None:
        try:
            self.engine.close(stream_id, keep_state=False)
        except Exception:  # noqa: BLE001, S110  (already finished; a failed cleanup must not fail the row)
            pass


def calls_return_at_once(engine: EngineAPI) -> bool:
    """An Engine in this process without a durable store: opening a document's stream, its results once its
    chunks are applied and closing it return without waiting (with a store, opening a stream reads it), so the
    runner makes them itself (call_threads=0)."""
    from ..engine.engine import Engine

    return isinstance(engine, Engine) and engine.durable is None
