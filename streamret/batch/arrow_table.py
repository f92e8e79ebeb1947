"""Embed every document of an Arrow table through the streaming engine.

Each document is fed as a temporary stream, chunk by chunk, exactly as a client would stream it, so a
document of any length costs constant memory and gets the same embedding it would get over gRPC. Many
documents are in flight at once, each with a few chunks queued (`window`), so the engine's scheduler batches
them and never waits for an ack between a document's chunks; each temporary stream is closed as soon as its
document is done. With engine processes (a ShardedEngine) this runner does not drive the documents from this
process: sub-batches of rows go to the engine processes, and each runs this same runner on its own engine
(sub_batches.py).

A bad row (null, empty or non-UTF-8 text, null id, an engine error) gets a message in `error` and the job goes
on; a bad table (missing column, wrong column type) raises InvalidArgument.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InvalidArgument, StreamRetError, TooBusy
from ..textcheck import InvalidText, check_bytes

if TYPE_CHECKING:  # (the client shares this module and does not load the engine)
    from ..engine.api import EngineAPI

log = logging.getLogger("streamret.batch")

DEFAULT_CHUNK_BYTES = 64 * 1024
DEFAULT_IN_FLIGHT = 256
DEFAULT_WINDOW = 4  # chunks of one document queued in the engine at once

_STRING_TYPES = (pa.string(), pa.large_string(), pa.string_view())
_BINARY_TYPES = (pa.binary(), pa.large_binary(), pa.binary_view())


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


def _column(table: pa.Table, name: str, what: str) -> pa.ChunkedArray:
    if name not in table.column_names:
        raise InvalidArgument(f"the table has no {what} column {name!r}; its columns are {table.column_names}")
    return table.column(name)


def _ids(table: pa.Table, id_column: str) -> pa.ChunkedArray:
    ids = _column(table, id_column, "id")
    if ids.type in _STRING_TYPES:
        return ids.cast(pa.string())
    if pa.types.is_integer(ids.type):
        return int64_column(ids, f"column {id_column!r}", "use smaller integer ids or string ids")
    raise InvalidArgument(f"column {id_column!r} has type {ids.type}; ids must be string or int64")


def int64_column(column: pa.ChunkedArray, what: str, fix: str) -> pa.ChunkedArray:
    """An integer column as int64; InvalidArgument naming the column when a value does not fit (e.g. a uint64
    of 2^64 - 1), instead of the cast's ArrowInvalid."""
    try:
        return column.cast(pa.int64())
    except (pa.ArrowInvalid, OverflowError):
        raise InvalidArgument(f"{what} holds a value outside the int64 range [-2^63, 2^63); {fix}") from None


def _texts(table: pa.Table, text_column: str) -> list[bytes | str]:
    """Each row's UTF-8 bytes, or an error message (str) for a row that has no usable text."""
    col = _column(table, text_column, "text")
    if col.type not in _STRING_TYPES + _BINARY_TYPES:
        raise InvalidArgument(f"column {text_column!r} has type {col.type}; text must be string (or UTF-8 binary)")
    out: list[bytes | str] = []
    for value in col.cast(pa.large_binary()).to_pylist():
        if value is None:
            out.append("text is null")
            continue
        try:
            check_bytes(value, "text")  # non-empty UTF-8 without NUL bytes, as everywhere (streamret/textcheck.py)
        except InvalidText as e:
            out.append(str(e))
            continue
        out.append(value)
    return out


def table_from_ipc(data: bytes) -> pa.Table:
    """Read one Arrow IPC stream (what the Batch messages carry in arrow_ipc).

    The reader checks only the framing: a damaged body can still hold offsets that point outside its
    buffers, and reading those crashes the process. So the table is fully validated (field names too:
    they must be UTF-8) before any use.
    """
    try:
        table = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
        table.validate(full=True)
    except (pa.ArrowException, OSError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"arrow_ipc is not a readable Arrow IPC stream ({e}); write it with "
                              "pyarrow.ipc.new_stream") from None
    names = table.column_names
    if len(set(names)) < len(names):  # a column looked up by name would be ambiguous
        twice = sorted({n for n in names if names.count(n) > 1})
        raise InvalidArgument(f"arrow_ipc has more than one column named {twice}; give each column its own name")
    return table


def table_to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


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
                 on_row_done: Callable[[], None] | None = None, on_bytes: Callable[[int], None] | None = None,
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
            wait(opens)  # then every open stream is known
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
            fut = Future()
            try:
                fn()
                fut.set_result(None)
            except Exception as e:  # noqa: BLE001  (the row's error, as a call thread's would be)
                fut.set_exception(e)
        else:
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
            self.on_row_done()

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


def embed_table(
    engine: EngineAPI,
    table: pa.Table,
    *,
    id_column: str = "id",
    text_column: str = "text",
    summary_k: int = 5,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    max_in_flight: int = DEFAULT_IN_FLIGHT,
    stream_prefix: str | None = None,
    on_row_done: Callable[[], None] | None = None,
    on_bytes: Callable[[int], None] | None = None,
    max_bytes_in_flight: int | None = None,
    group: str | None = None,
    stop: Stop | None = None,
    call_threads: int | None = None,
    window: int = DEFAULT_WINDOW,
) -> pa.Table:
    """Embed each row's text; return `id`, `embedding` fixed_size_list<float32>[dim], `tokens` int64,
    `summary` list<string> (top `summary_k` segments), `error` string (null when the row succeeded).

    `engine`: an Engine, ShardedEngine or ClusterEngine (EngineAPI). Temporary streams are named
    `stream_prefix + row number` (default: a fresh unique prefix), opened with durable=False (no record per
    row) in the scheduler's fairness `group`, and closed when their row is done.
    At most `max_in_flight` rows and `max_bytes_in_flight` bytes of chunks are queued in the engine at once
    (with engine processes: in all of them together), at most `window` chunks of one row;
    `call_threads` threads make the rows' other engine calls (open, results, close); None: the caller's thread
    for an Engine in this process without a state_dir (calls_return_at_once), 16 otherwise; with engine processes (an
    engine with `embed_documents`) each sub-batch's calls are made by its runner's thread in its engine process.
    `stop`: once its deadline passes or it is cancelled, no more chunks are sent; the rows not done get
    DEADLINE_EXCEEDED or CANCELLED in `error`, and every temporary stream is still closed before returning.
    `on_row_done` is called (on the caller's thread) once per row the engine finished, embedded or failed.
    `on_bytes(n)` (same thread) says that n more bytes of the table's text are done: as each chunk is
    acknowledged, and at once for rows that are not sent (a bad row's bytes, the rest of a failed row's);
    when every row is done they add up to the text column's bytes. With engine processes both are called as
    each sub-batch of rows comes back, not per chunk (sub_batches.py).
    """
    if chunk_bytes < 1:
        raise InvalidArgument(f"chunk_bytes must be >= 1, got {chunk_bytes}")
    if max_in_flight < 1:
        raise InvalidArgument(f"max_in_flight must be >= 1, got {max_in_flight}")
    if window < 1:
        raise InvalidArgument(f"window must be >= 1 (chunks of a document in flight), got {window}")
    if max_bytes_in_flight is not None and max_bytes_in_flight < 1:
        raise InvalidArgument(f"max_bytes_in_flight must be >= 1 or None, got {max_bytes_in_flight}")
    ids = _ids(table, id_column)
    texts = _texts(table, text_column)
    prefix = stream_prefix if stream_prefix is not None else f"batch-{uuid.uuid4().hex}-"

    docs, rows = [], []
    for row, (rid, text) in enumerate(zip(ids.to_pylist(), texts)):
        doc = _Doc(row, f"{prefix}{row}", b"", chunk_bytes)
        if rid is None:
            doc.error = "id is null"
        elif isinstance(text, str):
            doc.error = text
        else:
            doc.data = text
            docs.append(doc)
        rows.append(doc)
    if on_bytes is not None:
        col = _column(table, text_column, "text").cast(pa.large_binary())
        unsent = int(pc.sum(pc.binary_length(col)).as_py() or 0) - sum(len(d.data) for d in docs)
        if unsent:
            on_bytes(unsent)
    in_processes = getattr(engine, "embed_documents", None)
    if in_processes is not None:  # engine processes: each runs this runner on sub-batches of the rows itself
        in_processes(docs, summary_k=summary_k, chunk_bytes=chunk_bytes, max_in_flight=max_in_flight,
                     max_bytes_in_flight=max_bytes_in_flight, group=group, stop=stop, window=window,
                     on_row_done=on_row_done, on_bytes=on_bytes)
    else:
        if call_threads is None:
            call_threads = 0 if calls_return_at_once(engine) else 16
        _Runner(engine, docs, summary_k, max_in_flight, on_row_done, on_bytes, max_bytes_in_flight=max_bytes_in_flight,
                group=group, stop=stop, call_threads=call_threads, window=window).run()

    dim = next((d.embedding.shape[0] for d in rows if d.embedding is not None), None) or engine.embed_dim
    flat = np.zeros((len(rows), dim), dtype=np.float32)
    valid = np.zeros(len(rows), dtype=bool)
    for i, d in enumerate(rows):
        if d.embedding is not None and d.error is None:
            flat[i], valid[i] = d.embedding, True
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), dim, mask=pa.array(~valid))
    return pa.table({
        "id": ids.combine_chunks() if ids.num_chunks else pa.array([], ids.type),
        "embedding": embedding,
        "tokens": pa.array([d.tokens if d.error is None else None for d in rows], pa.int64()),
        "summary": pa.array([d.summary if d.error is None else None for d in rows], pa.list_(pa.string())),
        "error": pa.array([d.error for d in rows], pa.string()),
    })
