"""`embed_parquet`: a Parquet corpus -> a folder of Parquet parts with one embedding and summary per row.

The local job, one engine in this process:

    Corpus.batches()  ->  skip rows already written  ->  cut into parts  ->  embed_part (embed_table,
    several parts at once so the engine never drains)  ->  PartFolder.commit, in order, one part at a time

A part is cut by rows and text bytes from the rows still to do, so a rerun after a crash cuts the same
parts the uninterrupted run would have, and writes the same files. A crash loses at most the parts in
flight (`parts_in_flight`, 2 by default). With `ray=` the same job runs on Ray Data (ray_job.py).

Row errors that come from the data (null, empty, non-UTF-8 text, a text column of the wrong type, a
null id) are written in `error` and the job goes on. An error of the engine itself (a failed model
step, a shut-down engine) stops the job before the part is committed, so a rerun embeds those rows
instead of keeping them as errors.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InvalidArgument, Unavailable
from .arrow_table import DEFAULT_CHUNK_BYTES, DEFAULT_IN_FLIGHT, embed_table
from .corpus import Corpus
from .parts import PartFolder, with_fingerprint

if TYPE_CHECKING:
    from ..engine import Engine
    from ..engine.api import EngineAPI

DEFAULT_ROWS_PER_PART = 1024
DEFAULT_BYTES_PER_PART = 32 << 20
_ENGINE_FAILURES = ("UNAVAILABLE:", "INTERNAL", "RESOURCE_EXHAUSTED:")  # not the row's fault: retry, don't record


@dataclass(frozen=True)
class BatchReport:
    documents: int  # rows written by this run
    errors: int  # of those, rows written with an error
    tokens: int  # tokens embedded by this run
    skipped: int  # rows found already written (resume)
    parts: int  # files written by this run
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


# ---------------------------------------------------------------------------------------------
# one part through the engine


def embed_part(engine: EngineAPI, part: pa.Table, *, summary_k: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
               max_in_flight: int = DEFAULT_IN_FLIGHT) -> pa.Table:
    """Embed a normalised part (corpus.py: id, text, error) -> the output rows, in the same order,
    tagged with the engine's model fingerprint."""
    bad = part.column("error").is_valid().to_numpy(zero_copy_only=False)
    good_rows, bad_rows = np.flatnonzero(~bad), np.flatnonzero(bad)
    good = part.take(good_rows).select(["id", "text"])
    out = embed_table(engine, good, summary_k=summary_k, chunk_bytes=chunk_bytes, max_in_flight=max_in_flight)
    if len(bad_rows):
        errors = part.take(bad_rows)
        failed = pa.table({name: pa.nulls(len(bad_rows), field.type) for name, field in
                           zip(out.schema.names, out.schema)}, schema=out.schema)
        failed = failed.set_column(0, "id", errors.column("id")).set_column(4, "error", errors.column("error"))
        order = np.argsort(np.concatenate([good_rows, bad_rows]), kind="stable")
        out = pa.concat_tables([out, failed]).take(order)
    return with_fingerprint(out.combine_chunks(), engine.fingerprint)


def check_engine_errors(out: pa.Table, what: str) -> None:
    """Raise when a row failed because of the engine rather than its data (module doc)."""
    errors = [e for e in out.column("error").to_pylist() if e is not None and e.startswith(_ENGINE_FAILURES)]
    if errors:
        raise Unavailable(f"{len(errors)} rows of {what} failed in the engine (first: {errors[0]}); nothing of it "
                          "was written: rerun the same command to resume")


# ---------------------------------------------------------------------------------------------
# rows -> parts


def skip_written(batches: Iterable[pa.Table], written: Counter) -> Iterator[pa.Table]:
    """Drop, for each id, as many rows as the output already holds for it (the first ones: the order in
    which an uninterrupted run wrote them). Yields (table, rows skipped)."""
    left = Counter(written)
    for table in batches:
        if not left:
            yield table, 0
            continue
        keep = []
        for rid in table.column("id").to_pylist():
            if left[rid] > 0:
                left[rid] -= 1
                keep.append(False)
                if not left[rid]:
                    del left[rid]
            else:
                keep.append(True)
        mask = pa.array(keep, pa.bool_())
        yield table.filter(mask), len(keep) - sum(keep)


def cut_parts(batches: Iterable[pa.Table], rows_per_part: int, bytes_per_part: int) -> Iterator[pa.Table]:
    """Regroup tables into parts of `rows_per_part` rows, closed early once they hold `bytes_per_part`
    text bytes (a single larger document is a part of its own). Where a part ends depends only on the
    rows, never on how they arrived in tables."""
    pending: list[pa.Table] = []
    rows = nbytes = 0
    for table in batches:
        sizes = pc.fill_null(pc.binary_length(table.column("text")), 0).to_numpy().astype(np.int64)
        while table.num_rows:
            cum = nbytes + np.cumsum(sizes)
            by_bytes = int(np.argmax(cum >= bytes_per_part)) + 1 if cum[-1] >= bytes_per_part else table.num_rows + 1
            take = min(rows_per_part - rows, by_bytes)
            if take > table.num_rows:
                pending.append(table)
                rows, nbytes = rows + table.num_rows, int(cum[-1])
                break
            yield pa.concat_tables([*pending, table.slice(0, take)]).combine_chunks()
            pending, rows, nbytes = [], 0, 0
            table, sizes = table.slice(take), sizes[take:]
    if pending:
        yield pa.concat_tables(pending).combine_chunks()


# ---------------------------------------------------------------------------------------------
# progress


class _Progress:
    """tqdm bar: documents (with ETA) and the engine's tokens/s."""

    def __init__(self, engine: EngineAPI, total: int, enabled: bool):
        from tqdm.auto import tqdm

        self.engine = engine
        # disable=None: on when stderr is a terminal, so logs do not fill with bars
        self.bar = tqdm(total=total, unit="doc", dynamic_ncols=True, disable=None if enabled else True, smoothing=0.1)
        self.start = time.monotonic()
        self.tokens0 = engine.stats()["tokens_processed"]

    def refresh(self) -> None:
        rate = (self.engine.stats()["tokens_processed"] - self.tokens0) / max(time.monotonic() - self.start, 1e-9)
        self.bar.set_postfix_str(f"{_si(rate)} tok/s", refresh=True)

    def advance(self, docs: int) -> None:
        self.bar.update(docs)
        self.refresh()

    def close(self) -> None:
        self.bar.close()


def _si(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.2f}{unit}"
    return f"{x:.0f}"


# ---------------------------------------------------------------------------------------------
# the job


def embed_parquet(
    input: str,
    output: str,
    *,
    model: str = "default",
    device: str = "auto",
    dtype: str | None = "auto",
    engine: EngineAPI | None = None,
    id_column: str = "id",
    text_column: str = "text",
    summary_k: int = 5,
    batch_tokens: int | None = None,
    rows_per_part: int = DEFAULT_ROWS_PER_PART,
    bytes_per_part: int = DEFAULT_BYTES_PER_PART,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    max_in_flight: int = DEFAULT_IN_FLIGHT,
    parts_in_flight: int = 2,
    progress: bool = True,
    ray: bool | str | None = None,
    ray_workers: int = 1,
    gpus_per_worker: float | None = None,
) -> BatchReport:
    """Embed every row of a Parquet corpus and write `id, embedding, tokens, summary, error` parts to
    the folder `output`; rows already there are skipped (resume).

    input: a Parquet file, a folder, a glob, or an fsspec URL of any of those. The model is `engine`
    (an Engine or a ClusterEngine, left running) or else one built from `model`/`device`/`dtype` with
    `batch_tokens` tokens per step. `ray`: None/False runs here; True or "auto" runs on Ray Data
    (joining RAY_ADDRESS, or a local Ray), a string address joins that cluster; then each of
    `ray_workers` actors holds an engine on `gpus_per_worker` GPUs (default 1 on CUDA, 0 on CPU).
    """
    for name, value in (("rows_per_part", rows_per_part), ("bytes_per_part", bytes_per_part),
                        ("parts_in_flight", parts_in_flight), ("ray_workers", ray_workers)):
        if value < 1:
            raise InvalidArgument(f"{name} must be >= 1, got {value}")
    if summary_k < 0:
        raise InvalidArgument(f"summary_k must be >= 0, got {summary_k}")
    corpus = Corpus(input, id_column, text_column)
    folder = PartFolder(output)
    if ray not in (None, False):
        if engine is not None:
            raise InvalidArgument("with ray=, each Ray worker builds its own engine: pass model=, not engine=")
        from .ray_job import run_on_ray

        return run_on_ray(corpus, folder, address=None if ray in (True, "auto") else ray, model=model,
                          device=device, dtype=dtype, summary_k=summary_k, batch_tokens=batch_tokens,
                          rows_per_part=rows_per_part, chunk_bytes=chunk_bytes, max_in_flight=max_in_flight,
                          workers=ray_workers, gpus_per_worker=gpus_per_worker)

    own_engine = build_engine(model, device, dtype, batch_tokens) if engine is None else None
    if own_engine is not None:
        engine = own_engine
    elif batch_tokens is not None:
        raise InvalidArgument("batch_tokens configures an engine this call builds; set it in the given engine's "
                              "EngineConfig(max_step_tokens=...) instead")

    def stop_engine() -> None:
        if own_engine is not None:  # fails whatever is still queued, so the parts in flight end at once
            own_engine.shutdown(checkpoint=False)

    try:
        return _run_local(corpus, folder, engine, summary_k=summary_k, rows_per_part=rows_per_part,
                          bytes_per_part=bytes_per_part, chunk_bytes=chunk_bytes, max_in_flight=max_in_flight,
                          parts_in_flight=parts_in_flight, progress=progress, on_abort=stop_engine)
    finally:
        stop_engine()


def build_engine(model: str, device: str, dtype: str | None, batch_tokens: int | None) -> Engine:
    """An engine for batch work: no durable store (its streams are temporary), `batch_tokens` per step."""
    from ..engine import Engine, EngineConfig

    config = EngineConfig() if batch_tokens is None else EngineConfig(max_step_tokens=batch_tokens)
    return Engine.from_model(model, device=device, config=config, dtype=dtype)


def _run_local(corpus: Corpus, folder: PartFolder, engine: EngineAPI, *, summary_k: int, rows_per_part: int,
               bytes_per_part: int, chunk_bytes: int, max_in_flight: int, parts_in_flight: int,
               progress: bool, on_abort) -> BatchReport:
    max_chunk = getattr(getattr(engine, "config", None), "max_chunk_bytes", chunk_bytes)
    if chunk_bytes > max_chunk:
        raise InvalidArgument(f"chunk_bytes={chunk_bytes} exceeds the engine's max_chunk_bytes={max_chunk}")
    start = time.monotonic()
    written = folder.prepare_resume(engine.fingerprint)
    next_index = folder.next_part()
    skipped = 0

    def rows_to_do() -> Iterator[pa.Table]:
        nonlocal skipped
        for table, n in skip_written(corpus.batches(), written.ids):
            skipped += n
            if table.num_rows:
                yield table

    bar = _Progress(engine, max(0, corpus.count_rows() - written.rows), progress)
    docs = errors = tokens = parts = 0
    inflight: deque[Future] = deque()

    def commit_oldest() -> None:
        nonlocal docs, errors, tokens, parts, next_index
        fut = inflight.popleft()
        while True:
            try:
                out = fut.result(timeout=0.5)
                break
            except FutureTimeout:
                bar.refresh()
        check_engine_errors(out, f"part {next_index}")
        folder.commit(next_index, out)
        next_index += 1
        parts += 1
        docs += out.num_rows
        errors += out.num_rows - out.column("error").null_count
        tokens += int(pc.sum(out.column("tokens")).as_py() or 0)
        bar.advance(out.num_rows)

    pool = ThreadPoolExecutor(parts_in_flight, thread_name_prefix="streamret-batch")
    try:
        for part in cut_parts(rows_to_do(), rows_per_part, bytes_per_part):
            inflight.append(pool.submit(embed_part, engine, part, summary_k=summary_k,
                                        chunk_bytes=chunk_bytes, max_in_flight=max_in_flight))
            if len(inflight) >= parts_in_flight:
                commit_oldest()
        while inflight:
            commit_oldest()
    except BaseException:
        for fut in inflight:  # nothing more is committed; stop the parts in flight instead of finishing them
            fut.cancel()
        on_abort()
        raise
    finally:
        pool.shutdown(wait=True)
        bar.close()
    return BatchReport(docs, errors, tokens, skipped, parts, time.monotonic() - start)
