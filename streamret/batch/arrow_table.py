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

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InvalidArgument
from ..textcheck import InvalidText, check_bytes
from .runner import DEFAULT_WINDOW, Stop, _Doc, _Runner, calls_return_at_once

if TYPE_CHECKING:  # (the client shares this module and does not load the engine)
    from ..engine.api import EngineAPI

DEFAULT_CHUNK_BYTES = 64 * 1024
DEFAULT_IN_FLIGHT = 256

_STRING_TYPES = (pa.string(), pa.large_string(), pa.string_view())
_BINARY_TYPES = (pa.binary(), pa.large_binary(), pa.binary_view())


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
    """Each row's UTF-8 bytes, or an error message (str) for a row that has no usable text: non-empty UTF-8
    without NUL bytes, as everywhere (streamret/textcheck.py). The whole column is checked with array work first;
    only the rows it flags go through `check_bytes` for their message (decoding every row to check it took 9-13 ms
    of a 25-29 MB part on the workplace VM, against 6-7, before the part's first document went out: bench/RESULTS.md,
    session 52)."""
    col = _column(table, text_column, "text")
    if col.type not in _STRING_TYPES + _BINARY_TYPES:
        raise InvalidArgument(f"column {text_column!r} has type {col.type}; text must be string (or UTF-8 binary)")
    binary = col.cast(pa.large_binary())
    out: list[bytes | str] = binary.to_pylist()
    for row in np.flatnonzero(_rows_to_check(binary)).tolist():
        if out[row] is None:
            out[row] = "text is null"
            continue
        try:
            check_bytes(out[row], "text")
        except InvalidText as e:
            out[row] = str(e)
    return out


def _rows_to_check(col: pa.ChunkedArray) -> np.ndarray:
    """bool [rows] of a large_binary column: the rows that may not be usable text (null, empty, with a NUL byte,
    or in a chunk that is not all UTF-8: Arrow's check does not say which row), by whole-chunk work."""
    flags = []
    for chunk in col.chunks:
        flag = (pc.binary_length(chunk).fill_null(0).to_numpy(zero_copy_only=False) == 0)
        try:
            chunk.view(pa.large_string()).validate(full=True)  # UTF-8 (Arrow's own check: C++, all rows at once)
        except pa.ArrowInvalid:
            flag[:] = True
        else:
            offsets = np.frombuffer(chunk.buffers()[1], np.int64)[chunk.offset: chunk.offset + len(chunk) + 1]
            if len(chunk) and offsets[-1] > offsets[0]:
                body = np.frombuffer(chunk.buffers()[2], np.uint8)[offsets[0]: offsets[-1]]
                if body.min() == 0:  # (rare: one pass over the bytes finds that no row needs a look)
                    nul = offsets[0] + np.flatnonzero(body == 0)
                    flag[np.searchsorted(offsets, nul, side="right") - 1] = True
        flags.append(flag)
    return np.concatenate(flags) if flags else np.zeros(0, bool)


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
    role: str = "query",
    on_rows: Callable[[pa.Table], None] | None = None,
    rows_at_once: int = 1,
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
    `role`: the embeddings' role, "query" (as the model computes them) or "document" (the model's document map
    applied: whole documents for an index; streamret/model/document_map.py); checked before any row is sent.
    `on_row_done` is called (on the caller's thread) once per row the engine finished, embedded or failed.
    `on_bytes(n)` (same thread) says that n more bytes of the table's text are done: as each chunk is
    acknowledged, and at once for rows that are not sent (a bad row's bytes, the rest of a failed row's);
    when every row is done they add up to the text column's bytes. With engine processes both are called as
    each sub-batch of rows comes back, not per chunk (sub_batches.py).
    `on_rows(t)` (same thread) gets the output rows in table order as soon as every row before them is done, at
    least `rows_at_once` at a time, the last ones once all are done; the tables it gets make up the one returned
    (a batch job's part encodes them while its later rows still run: parquet_job.embed_part).
    """
    if chunk_bytes < 1:
        raise InvalidArgument(f"chunk_bytes must be >= 1, got {chunk_bytes}")
    if max_in_flight < 1:
        raise InvalidArgument(f"max_in_flight must be >= 1, got {max_in_flight}")
    if window < 1:
        raise InvalidArgument(f"window must be >= 1 (chunks of a document in flight), got {window}")
    if max_bytes_in_flight is not None and max_bytes_in_flight < 1:
        raise InvalidArgument(f"max_bytes_in_flight must be >= 1 or None, got {max_bytes_in_flight}")
    engine.check_role(role)
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
    out = _InOrder(rows, lambda a, b: _output(rows[a:b], ids.slice(a, b - a), engine, role), on_rows,
                   rows_at_once if on_rows is not None else len(rows) + 1)

    def row_done(doc: _Doc) -> None:
        out.done(doc.row)
        if on_row_done is not None:
            on_row_done()

    in_processes = getattr(engine, "embed_documents", None)
    if in_processes is not None:  # engine processes: each runs this runner on sub-batches of the rows itself
        in_processes(docs, summary_k=summary_k, chunk_bytes=chunk_bytes, max_in_flight=max_in_flight,
                     max_bytes_in_flight=max_bytes_in_flight, group=group, stop=stop, window=window,
                     on_row_done=row_done, on_bytes=on_bytes)
    else:
        if call_threads is None:
            call_threads = 0 if calls_return_at_once(engine) else 16
        _Runner(engine, docs, summary_k, max_in_flight, row_done, on_bytes, max_bytes_in_flight=max_bytes_in_flight,
                group=group, stop=stop, call_threads=call_threads, window=window).run()
    return out.finish()


class _InOrder:
    """A table's output rows handed on in order as soon as every row before them is done, at least `at_once`
    at a time (`embed_table`'s on_rows). Rows that were never sent (bad ones) are done from the start."""

    def __init__(self, rows: list[_Doc], output: Callable[[int, int], pa.Table],
                 on_rows: Callable[[pa.Table], None] | None, at_once: int):
        self.output, self.on_rows, self.at_once = output, on_rows, at_once
        self.finished = np.fromiter((d.error is not None for d in rows), bool, len(rows))
        self.ready = self.given = 0  # rows before `ready` are done; before `given`, handed on
        self.tables: list[pa.Table] = []
        self._advance()

    def done(self, row: int) -> None:
        self.finished[row] = True
        self._advance()
        if self.ready - self.given >= self.at_once:
            self._give(self.ready)

    def finish(self) -> pa.Table:
        """The rest (every row is final now: the runner gave those it did not finish their error), and the whole
        output."""
        if self.given < len(self.finished) or not self.tables:
            self._give(len(self.finished))
        return pa.concat_tables(self.tables)

    def _advance(self) -> None:
        n = len(self.finished)
        while self.ready < n and self.finished[self.ready]:
            self.ready += 1

    def _give(self, end: int) -> None:
        table = self.output(self.given, end)
        self.given = end
        self.tables.append(table)
        if self.on_rows is not None:
            self.on_rows(table)


def _output(rows: list[_Doc], ids: pa.ChunkedArray, engine: EngineAPI, role: str) -> pa.Table:
    """`embed_table`'s output columns for these rows (ids: theirs)."""
    dim = next((d.embedding.shape[0] for d in rows if d.embedding is not None), None) or engine.embed_dim
    flat = np.zeros((len(rows), dim), dtype=np.float32)
    valid = np.zeros(len(rows), dtype=bool)
    for i, d in enumerate(rows):
        if d.embedding is not None and d.error is None:
            flat[i], valid[i] = d.embedding, True
    if role != "query" and valid.any():
        flat[valid] = engine.as_role(flat[valid], role)
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), dim, mask=pa.array(~valid))
    return pa.table({
        "id": ids.combine_chunks() if ids.num_chunks else pa.array([], ids.type),
        "embedding": embedding,
        "tokens": pa.array([d.tokens if d.error is None else None for d in rows], pa.int64()),
        "summary": pa.array([d.summary if d.error is None else None for d in rows], pa.list_(pa.string())),
        "error": pa.array([d.error for d in rows], pa.string()),
    })
