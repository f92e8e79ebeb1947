"""embed_table over engine processes: sub-batches of the rows, each run by one engine process on itself.

Driving every document from the server process would cost five calls across a pipe per document (open, the
chunks, embedding, summary, close), and the parent's CPU per call bounds the whole job. Instead the rows are
cut into sub-batches (`SUB_BATCH_BYTES` of text or `SUB_BATCH_ROWS` rows, whichever comes first; a larger
document is a sub-batch of its own; smaller ones for a small table, so that every engine gets a share), and
each goes to an engine process as one call: that process runs embed_table's own runner (runner._Runner)
on its in-process Engine and sends back the rows' results.

- Load: every engine holds `SUB_BATCHES_PER_ENGINE` sub-batches at once (one runs its tail while the next
  fills the steps); the next sub-batch goes to whichever engine finishes one first, and sub-batches shrink
  as the rows left do (`cut`), so that the engines run out of work together. A batch of few sub-batches (at
  most `MAX_SUB_BATCHES_PER_ENGINE` an engine: a few large documents) starts them all at once instead. The
  batch's max_in_flight and max_bytes_in_flight are split evenly over the sub-batches that can run at once,
  so the call's bounds hold in total; the text in the engines is at most that many sub-batches.
- Results come back in row order whatever engine ran them; temporary stream ids stay embed_table's
  (prefix + row number), unique across engines.
- Progress: on_bytes and on_row_done are called as each sub-batch comes back (not per chunk), with the
  bytes and rows the engine's runner counted as done.
- Stop: each sub-batch carries the deadline (time.monotonic() is the host's clock, the same in every process);
  a cancellation stops sending sub-batches and tells the engines to stop the running ones at their next check.
  Rows not run get the stop's error, as in embed_table.
- An engine process that exits fails the rows of its sub-batches with UNAVAILABLE (the parquet job then
  stops and a rerun resumes) and gets no more sub-batches of this call; the other engines go on.

`embed_documents` and `cancel_documents` are the engine process's side (engine_process.py's `serve` runs them).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait

import numpy as np

from ..errors import Unavailable
from .runner import Stop, _describe, _Doc, _Runner, calls_return_at_once

SUB_BATCH_BYTES = 1 << 20
SUB_BATCH_ROWS = 512
SUB_BATCHES_PER_ENGINE = 2
# when all the sub-batches fit in this many an engine, they start at once: 4 read long documents +6.8% and +8.0% and
# short ones +11.6% and +2.2% against 2 (off) in two pairs on an H100 (bench/RESULTS.md, session 59; session 36 had
# read long documents -9% and +6%)
MAX_SUB_BATCHES_PER_ENGINE = 4
SUB_BATCH_MIN_ROWS = 16  # the smallest sub-batches of a batch's end (cut's guided sizes)
SUB_BATCH_MIN_BYTES = 64 << 10
_CANCELLED_KEEP_S = 300.0  # a cancellation that arrives after its sub-batch ended is forgotten after this

Send = Callable[[int, str, tuple], Future]  # (engine rank, op, args) -> the answer's Future; Unavailable if down


def cut(docs: list[_Doc], max_bytes: int = SUB_BATCH_BYTES, max_rows: int = SUB_BATCH_ROWS,
        slots: int | None = None) -> Iterator[list[_Doc]]:
    """Consecutive documents, max_bytes of text or max_rows rows at most (one larger document alone).

    slots: sub-batches that run at once. Each sub-batch is then also at most 1 / (2 x slots) of the rows
    and of the bytes still to cut (but at least SUB_BATCH_MIN_ROWS rows or SUB_BATCH_MIN_BYTES): the sizes
    shrink towards the end, so that the engines finish together instead of a few of them running the last
    full-size sub-batches while the others idle (guided self-scheduling)."""
    rows_left, bytes_left = len(docs), sum(len(d.data) for d in docs)
    i = 0
    while i < len(docs):
        rows, size_cap = max_rows, max_bytes
        if slots is not None:
            rows = min(max_rows, max(SUB_BATCH_MIN_ROWS, -(-rows_left // (2 * slots))))
            size_cap = min(max_bytes, max(SUB_BATCH_MIN_BYTES, -(-bytes_left // (2 * slots))))
        batch, size = [docs[i]], len(docs[i].data)
        i += 1
        while i < len(docs) and len(batch) < rows and size + len(docs[i].data) <= size_cap:
            batch.append(docs[i])
            size += len(docs[i].data)
            i += 1
        rows_left -= len(batch)
        bytes_left -= size
        yield batch


def run_sub_batches(send: Send, engines: int, docs: list[_Doc], *, summary_k: int, chunk_bytes: int,
                    max_in_flight: int, max_bytes_in_flight: int | None, group: str | None, stop: Stop | None,
                    window: int, on_row_done: Callable[[_Doc], None] | None = None,
                    on_bytes: Callable[[int], None] | None = None) -> None:
    """Run embed_table's documents on `engines` engine processes (module doc); fills in each document's results
    or error, as runner._Runner does."""
    def bounded(wanted: int) -> int:
        """Sub-batches at once: fewer than wanted when the bounds are smaller, so that each gets at least one
        row and one byte of them and the bounds hold in total."""
        return max(1, min(wanted, max_in_flight, wanted if max_bytes_in_flight is None else max_bytes_in_flight))

    slots = bounded(engines * SUB_BATCHES_PER_ENGINE)
    # small enough that every engine gets a share of a small table, and of at most 4 times the documents a
    # sub-batch runs at once (its last documents, in its tail, leave few in its steps)
    total = sum(len(d.data) for d in docs)
    todo = deque(cut(docs, max(1, min(SUB_BATCH_BYTES, -(-total // slots))),
                     max(1, min(SUB_BATCH_ROWS, 4 * max(1, max_in_flight // slots), -(-len(docs) // slots))), slots))
    # A few large documents (each a sub-batch of its own) all start at once, spread evenly: taken two at a time,
    # 32 of them on 12 engines ran 24 and then 8 alone, a document's chunks cut by one thread at a time while a
    # third of the engines idled (bench/RESULTS.md, session 32).
    per_engine = SUB_BATCHES_PER_ENGINE
    if engines * per_engine < len(todo) <= engines * MAX_SUB_BATCHES_PER_ENGINE:
        per_engine = -(-len(todo) // engines)
        slots = bounded(len(todo))
    options = {"summary_k": summary_k, "max_in_flight": max(1, max_in_flight // slots),
               "max_bytes_in_flight": None if max_bytes_in_flight is None else max(1, max_bytes_in_flight // slots),
               "group": group, "window": window, "deadline": None if stop is None else stop.deadline}
    free = dict.fromkeys(range(engines), per_engine)  # engines still up -> sub-batches they may take now
    running: dict[Future, tuple[int, str, list[_Doc]]] = {}  # -> (engine, key, its documents)
    why = "INTERNAL: the batch was interrupted"
    down: BaseException | None = None  # why an engine was given up (the rows left fail with it when none is left)

    def finish(batch: list[_Doc], result: Future | None, error: BaseException | None = None) -> None:
        """A sub-batch came back (or failed as a whole): its rows' results, and their progress as the engine's
        runner counted it (a row cut short by a stop is not done, and only its acknowledged bytes are)."""
        if error is None:
            try:
                tokens, vectors, summaries, errors, done_bytes, finished = result.result()
            except BaseException as e:  # noqa: BLE001  (the engine process's error fails these rows)
                error = e
        if error is not None:  # failed rows are done, all their bytes with them
            done_bytes, finished = [len(d.data) for d in batch], [True] * len(batch)
        for i, doc in enumerate(batch):
            if error is not None:
                doc.error = _describe(error, doc)
            else:
                doc.tokens, doc.summary, doc.error = tokens[i], summaries[i], errors[i]
                doc.embedding = vectors[i] if errors[i] is None else None
        if on_bytes is not None and sum(done_bytes):
            on_bytes(sum(done_bytes))
        if on_row_done is not None:
            for doc, done in zip(batch, finished):
                if done:
                    on_row_done(doc)

    try:
        while todo or running:
            if stop is not None and stop.reason() is not None:
                break
            while todo and free and len(running) < slots:
                rank = max(free, key=free.__getitem__)  # the engine with the most room
                batch, key = todo[0], uuid.uuid4().hex
                args = (key, [d.row for d in batch], [d.stream_id for d in batch], [d.data for d in batch],
                        chunk_bytes, options)
                try:
                    fut = send(rank, "embed_documents", args)
                except Unavailable as e:  # exited: this call gives it nothing more
                    del free[rank]
                    down = e
                    continue
                todo.popleft()
                running[fut] = (rank, key, batch)
                free[rank] -= 1
                if not free[rank]:
                    del free[rank]
            if todo and not running:  # every engine is down
                for batch in todo:
                    finish(batch, None, down)
                todo.clear()
                break
            done, _ = wait(running, timeout=None if stop is None else 0.05, return_when=FIRST_COMPLETED)
            for fut in done:
                rank, _, batch = running.pop(fut)
                finish(batch, fut)
                if isinstance(fut.exception(), Unavailable):
                    free.pop(rank, None)  # its process exited: no more of this call's sub-batches there
                    down = fut.exception()
                else:
                    free[rank] = free.get(rank, 0) + 1
    finally:
        if stop is not None and (reason := stop.reason()) is not None:
            why = reason
        for rank, key, _ in running.values():  # a stop, or an interrupt here: the engines stop at their next check
            try:
                send(rank, "cancel_documents", (key,))
            except Unavailable:
                pass
        for fut in list(running):  # their temporary streams are closed before this returns
            rank, _, batch = running.pop(fut)
            wait([fut])
            finish(batch, fut)
        for doc in docs:  # the rows not run (a stop, an interrupt) say why
            if doc.embedding is None and doc.error is None:
                doc.error = why


# ----------------------------------------------------------------------------------------------------
# the engine process's side

_lock = threading.Lock()
_running: dict[str, Stop] = {}
_cancelled: dict[str, float] = {}  # cancellations that came before their sub-batch started -> when


def embed_documents(engine, key: str, rows: list[int], stream_ids: list[str], texts: list[bytes], chunk_bytes: int,
                    options: dict) -> tuple[list[int], np.ndarray, list[list[str]], list[str | None], list[int],
                                            list[bool]]:
    """Run one sub-batch on this process's engine: each row's tokens, embedding (zeros for a failed row),
    summary, error, text bytes done and whether it is done (the runner's on_bytes and on_row_done)."""
    docs = [_Doc(row, sid, text, chunk_bytes) for row, sid, text in zip(rows, stream_ids, texts)]
    stop = Stop(options["deadline"])
    with _lock:
        _running[key] = stop
        if _cancelled.pop(key, None) is not None:
            stop.cancel()
    try:
        _Runner(engine, docs, options["summary_k"], options["max_in_flight"],
                max_bytes_in_flight=options["max_bytes_in_flight"], group=options["group"], stop=stop,
                window=options["window"], call_threads=0 if calls_return_at_once(engine) else 16).run()
    finally:
        with _lock:
            del _running[key]
    vectors = np.zeros((len(docs), engine.embed_dim), dtype=np.float32)
    for i, doc in enumerate(docs):
        if doc.embedding is not None and doc.error is None:
            vectors[i] = doc.embedding
    return ([d.tokens for d in docs], vectors, [d.summary for d in docs], [d.error for d in docs],
            [d.bytes_done for d in docs], [d.finished for d in docs])


def cancel_documents(engine, key: str) -> None:
    """Stop the sub-batch `key` at its runner's next check (or before it starts, if it has not yet)."""
    now = time.monotonic()
    with _lock:
        stop = _running.get(key)
        if stop is not None:
            stop.cancel()
            return
        for old in [k for k, t in _cancelled.items() if now - t > _CANCELLED_KEEP_S]:
            del _cancelled[old]
        _cancelled[key] = now
