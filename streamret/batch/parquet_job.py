"""`embed_parquet`: a Parquet corpus -> a folder of Parquet parts with one embedding and summary per row.

The local job, one engine in this process:

    Corpus.batches()  ->  skip rows already written  ->  cut into parts  ->  embed_part (embed_table,
    a part's documents at once so that the scheduler packs them; its Parquet file encoded as its rows
    come back, in order: PartEncoder)  ->  PartFolder.commit, in order

A part is cut by text bytes (`bytes_per_part`, by default 1 MiB per engine process, 16 on a GPU: every engine keeps
busy; a larger document is a part of its own) and rows (`rows_per_part`, by default 1,024 per engine process, 16,384
on a GPU) from the rows still to do, so a rerun after a crash cuts the same parts the uninterrupted run would have.
The work is bounded by bytes, not rows: the parts in flight hold at most `bytes_per_part` of text together (up to
`parts_in_flight` small parts, or one part when it is larger), so a crash or Ctrl-C loses at most one part's work.
Ctrl-C raises EmbedInterrupted, which says what is saved and what was lost. Progress is counted in text bytes as the
engine acknowledges each chunk, against the bytes still to do (counted on the side), with the engine's tokens/s.
With `ray=` the same job runs on Ray Data (ray_job.py).

Row errors that come from the data (null, empty, non-UTF-8 text, a text column of the wrong type, a
null id) are written in `error` and the job goes on. An error of the engine itself (a failed model
step, a shut-down engine) stops the job before the part is committed, so a rerun embeds those rows
instead of keeping them as errors.
"""

from __future__ import annotations

import functools
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InvalidArgument, Unavailable
from ..progress import DEFAULT_EVERY_S, ByteProgress
from .arrow_table import DEFAULT_CHUNK_BYTES, DEFAULT_IN_FLIGHT, embed_table
from .corpus import Corpus
from .parts import PartEncoder, PartFolder, with_fingerprint

if TYPE_CHECKING:
    from ..engine.api import EngineAPI

DEFAULT_ROWS_PER_PART = 1024
DEFAULT_BYTES_PER_PART = 1 << 20  # one to two minutes of the default model's work on a CPU (2-4 k tokens/s)
# ... times this on a GPU, where 1 MiB an engine process is a fraction of a second of work and the engines idle at
# each part's end (the parts in flight hold one part's text, so the next part starts once this one is written): on
# an H200 with 12 engine processes, 25-30 MB of text in parts of 12 MiB read 0.41-0.44 (long documents) and
# 0.28-0.29 (short) of the packed forward against 0.46 and 0.33 as one part, with the engines idle for 75 ms and more
# between parts (bench/RESULTS.md, session 40). 16 MiB an engine process is, by arithmetic, about 6 s of their work
# there (192 MiB at the long-document part's 8.6-9.2 M tokens/s, 3.8 bytes a token), not measured as a part. On an
# H100 with 9 (session 41) it read 16-29% more than 1 MiB an engine process on corpora of 8 and 10 such parts.
GPU_PART_SCALE = 16
# a part's output rows go to its Parquet encoder at least this many at a time, as soon as every row before them is
# done (embed_part): a row group each, encoded while the part's later rows run
ROW_GROUP_ROWS = 1024
_ENGINE_FAILURES = ("UNAVAILABLE:", "INTERNAL", "RESOURCE_EXHAUSTED:")  # not the row's fault: retry, don't record


@dataclass(frozen=True)
class BatchReport:
    documents: int  # rows written by this run
    errors: int  # of those, rows written with an error
    tokens: int  # tokens embedded by this run
    skipped: int  # rows found already written (resume)
    parts: int  # files written by this run
    seconds: float  # from the model loaded and ready (Ray: the first actor's) to the last row written
    total_seconds: float  # the whole job: with the model load (Ray: Ray's start, the actors' start)
    detail: str = ""  # where the time went: the engines' steps (Ray: and the actors' start and busy time)
    role: str = "query"  # the embeddings' role ("query" or "document": streamret/model/document_map.py)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


# ---------------------------------------------------------------------------------------------
# one part through the engine


def embed_part(engine: EngineAPI, part: pa.Table, *, summary_k: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
               max_in_flight: int = DEFAULT_IN_FLIGHT, on_bytes: Callable[[int], None] | None = None,
               role: str = "query", encoder: PartEncoder | None = None) -> pa.Table:
    """Embed a normalised part (corpus.py: id, text, error) -> the output rows, in the same order, with
    embeddings in `role` (embed_table applies it once, on this side: engine processes return plain embeddings),
    tagged with the engine's model fingerprint and the role. `on_bytes(n)`: n more text bytes done (embed_table;
    with engine processes, as each sub-batch of rows comes back). max_in_flight: rows in work per engine process (a
    ShardedEngine's engines each run sub-batches of the part themselves: streamret/batch/sub_batches.py).
    `encoder`: gets the output rows as they are ready, in order (ROW_GROUP_ROWS at a time: a row group each)."""
    bad = part.column("error").is_valid().to_numpy(zero_copy_only=False)
    good_rows, bad_rows = np.flatnonzero(~bad), np.flatnonzero(bad)
    # (a part with no bad row is taken as it is: the take copies every text: 5-7 ms a 30 MB part on the workplace VM)
    good = (part.take(good_rows) if len(bad_rows) else part).select(["id", "text"])
    procs = getattr(engine, "procs", 1)
    tables: list[pa.Table] = []
    g = p = 0  # good rows, part rows handed on so far

    def with_bad_rows(out: pa.Table) -> None:
        """The next good rows (out), with the part's bad rows before the good row after them (after the last one:
        all that are left), in part order."""
        nonlocal g, p
        g_end = g + out.num_rows
        end = int(good_rows[g_end]) if g_end < len(good_rows) else part.num_rows
        bad_here = bad_rows[np.searchsorted(bad_rows, p): np.searchsorted(bad_rows, end)]
        if len(bad_here):
            errors = part.take(bad_here)
            failed = pa.table({name: pa.nulls(len(bad_here), field.type) for name, field in
                               zip(out.schema.names, out.schema)}, schema=out.schema)
            failed = failed.set_column(0, "id", errors.column("id")).set_column(4, "error", errors.column("error"))
            order = np.argsort(np.concatenate([good_rows[g:g_end], bad_here]), kind="stable")
            out = pa.concat_tables([out, failed]).take(order)
        out = with_fingerprint(out, engine.fingerprint, role)
        tables.append(out)
        if encoder is not None:
            encoder.add(out)
        g, p = g_end, end

    embed_table(engine, good, summary_k=summary_k, chunk_bytes=chunk_bytes, max_in_flight=max_in_flight * procs,
                on_bytes=on_bytes, role=role, on_rows=with_bad_rows, rows_at_once=ROW_GROUP_ROWS)
    return pa.concat_tables(tables)


def check_engine_errors(out: pa.Table, what: str) -> None:
    """Raise when a row failed because of the engine rather than its data (module doc)."""
    error = out.column("error")
    failed = pc.fill_null(functools.reduce(pc.or_, [pc.starts_with(error, p) for p in _ENGINE_FAILURES]), False)
    errors = error.filter(failed)
    if len(errors):
        raise Unavailable(f"{len(errors)} rows of {what} failed in the engine (first: {errors[0].as_py()}); nothing "
                          "of it was written: rerun the same command to resume")


# ---------------------------------------------------------------------------------------------
# where an engine's time went (BatchReport.detail)

_ENGINE_COUNTERS = ("steps", "tokens_processed", "step_streams", "loop_model_seconds", "loop_host_seconds")


def engine_counters(stats: dict) -> dict[str, float]:
    """The cumulative step counters of an engine's `stats()` that `engine_detail` reads; add or subtract them to
    combine engines or take a job's share."""
    out = {name: float(stats.get(name, 0)) for name in _ENGINE_COUNTERS}
    out.update({f"loop:{name}": float(s) for name, s in (stats.get("loop_parts_seconds") or {}).items()})
    return out


def engine_detail(counters: dict[str, float]) -> str:
    """One line: the steps, their size, and where the step loop's time went (its largest parts)."""
    steps = counters.get("steps", 0)
    if not steps:
        return "engine: no step"
    parts = sorted(((k.removeprefix("loop:"), v) for k, v in counters.items() if k.startswith("loop:")),
                   key=lambda kv: -kv[1])
    c = counters
    return (f"engine: {steps:,.0f} steps of {c['tokens_processed'] / steps:,.0f} tokens and "
            f"{c['step_streams'] / steps:.1f} streams on average; step loop {c['loop_model_seconds']:.1f} s in the "
            f"model runner, {c['loop_host_seconds']:.1f} s on the host; largest parts: "
            + ", ".join(f"{name} {s:.1f} s" for name, s in parts[:4]))


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
            yield pa.concat_tables([*pending, table.slice(0, take)])
            pending, rows, nbytes = [], 0, 0
            table, sizes = table.slice(take), sizes[take:]
    if pending:
        yield pa.concat_tables(pending)


# ---------------------------------------------------------------------------------------------
# progress and interruption


class EmbedInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGINT) stopped the local job: what it had saved and what it lost. The parts committed
    stay; rerunning the same job resumes after them."""

    def __init__(self, report: BatchReport, output: str, corpus_rows: int, rows_written: int, lost_bytes: int):
        self.report = report  # this run's figures, up to the interruption
        self.output = output
        self.corpus_rows = corpus_rows
        self.rows_written = rows_written  # rows in the output now, by every run
        self.lost_bytes = lost_bytes  # text bytes embedded by this run in parts that were not committed
        super().__init__(f"interrupted: {output} holds {rows_written} of {corpus_rows} rows")


class _Progress:
    """The job's progress in text bytes against the bytes still to do, with the engine's tokens/s and the
    parts saved (streamret/progress.py: a bar on a terminal, a line every `every_s` seconds otherwise).
    The total is counted on a background thread (one more read of the text column), so the job starts
    at once; until it is known the bar has no ETA."""

    def __init__(self, engine: EngineAPI, corpus: Corpus, written: Counter, enabled: bool, every_s: float,
                 tokens0: float):
        """tokens0: the engine's tokens_processed as the job starts (from the stats the job read then)."""
        self.engine, self.enabled = engine, enabled
        self.bar = ByteProgress("embed", enabled=enabled, every_s=every_s)
        self.start = time.monotonic()
        self.tokens0 = tokens0
        self.parts = 0
        if enabled:
            threading.Thread(target=self._count, args=(corpus, written), name="streamret-batch-count",
                             daemon=True).start()

    def _count(self, corpus: Corpus, written: Counter) -> None:
        try:
            total = sum(int(pc.sum(pc.binary_length(t.column("text"))).as_py() or 0)
                        for t, _ in skip_written(corpus.batches(), written))
        except Exception:  # noqa: BLE001  (the job reads the corpus itself and reports its errors)
            return
        self.bar.set_total(total)

    def bytes_done(self, n: int) -> None:
        self.bar.update(n)

    def refresh(self) -> None:
        if not self.enabled:  # (an engine's stats come from every engine process: a few ms each time, for nothing)
            return
        rate = (self.engine.stats()["tokens_processed"] - self.tokens0) / max(time.monotonic() - self.start, 1e-9)
        self.bar.set_note(f"{_si(rate)} tok/s, {self.parts} part{'s' if self.parts != 1 else ''} saved")

    def part_saved(self) -> None:
        self.parts += 1
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
    engine_procs: int | str = 1,
    rows_per_part: int | None = None,
    bytes_per_part: int | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    max_in_flight: int = DEFAULT_IN_FLIGHT,
    parts_in_flight: int = 2,
    progress: bool = True,
    progress_every_s: float = DEFAULT_EVERY_S,
    ray: bool | str | None = None,
    ray_workers: int = 1,
    gpus_per_worker: float | None = None,
    role: str = "query",
) -> BatchReport:
    """Embed every row of a Parquet corpus and write `id, embedding, tokens, summary, error` parts to
    the folder `output`; rows already there are skipped (resume).

    input: a Parquet file, a folder, a glob, or an fsspec URL of any of those. The model is `engine`
    (an Engine, ShardedEngine or ClusterEngine, left running) or else one built from `model`/`device`/`dtype`
    with `batch_tokens` tokens per step, over `engine_procs` engine processes (an int or "auto": see
    streamret.engine.shards.engine_procs; 1 runs the engine in this process). `ray`: None/False runs here;
    True or "auto" runs on Ray Data (joining RAY_ADDRESS, or a local Ray), a string address joins that
    cluster; then each of
    `ray_workers` actors holds an engine on `gpus_per_worker` GPUs (default 1 on CUDA, 0 on CPU).

    Parts: `bytes_per_part` text bytes or `rows_per_part` rows, whichever comes first; the parts in flight
    hold at most `bytes_per_part` together, so an interruption loses at most one part's work (module doc).
    None: DEFAULT_BYTES_PER_PART and DEFAULT_ROWS_PER_PART per engine process, GPU_PART_SCALE times that when the
    engine's model is on a GPU (`default_part_size`; with ray=, per batch, as on a CPU).
    progress: text bytes on stderr, a bar on a terminal, else a line every `progress_every_s` seconds.
    Ctrl-C (KeyboardInterrupt) in the local job raises EmbedInterrupted with what is saved and lost.

    role: the `embedding` column's role, "query" (the plain embedding, as the model computes it) or "document"
    (the model's document map applied: whole documents for an index that plain query embeddings search;
    streamret/model/document_map.py). Checked before any row is read or any file written: InvalidArgument for
    an unknown role, FailedPrecondition for "document" on a model without a document map. An output folder
    holds one role: resuming it with another is refused (parts.py).
    """
    called = time.monotonic()
    check_role_name(role)
    for name, value in (("rows_per_part", rows_per_part), ("bytes_per_part", bytes_per_part),
                        ("parts_in_flight", parts_in_flight), ("ray_workers", ray_workers)):
        if value is not None and value < 1:
            raise InvalidArgument(f"{name} must be >= 1, got {value}")
    if summary_k < 0:
        raise InvalidArgument(f"summary_k must be >= 0, got {summary_k}")
    if engine is None and ray in (None, False):
        from ..engine.shards import engine_procs as count_procs

        try:
            count_procs(engine_procs, device)
        except ValueError as e:
            raise InvalidArgument(str(e)) from None
    if engine is not None:
        engine.check_role(role)
    corpus = Corpus(input, id_column, text_column)
    folder = PartFolder(output, create=False)  # made once the job is known to run (a refused job leaves nothing)
    if ray not in (None, False):
        if engine is not None:
            raise InvalidArgument("with ray=, each Ray worker builds its own engine: pass model=, not engine=")
        from .ray_job import run_on_ray

        return run_on_ray(corpus, folder, address=None if ray in (True, "auto") else ray, model=model,
                          device=device, dtype=dtype, summary_k=summary_k, batch_tokens=batch_tokens,
                          rows_per_part=rows_per_part or DEFAULT_ROWS_PER_PART,
                          bytes_per_part=bytes_per_part or DEFAULT_BYTES_PER_PART, chunk_bytes=chunk_bytes,
                          max_in_flight=max_in_flight, workers=ray_workers, gpus_per_worker=gpus_per_worker,
                          called=called, role=role)

    own_engine = build_engine(model, device, dtype, batch_tokens, engine_procs) if engine is None else None
    if own_engine is not None:
        engine = own_engine
    elif batch_tokens is not None:
        raise InvalidArgument("batch_tokens configures an engine this call builds; set it in the given engine's "
                              "EngineConfig(max_step_tokens=...) instead")

    def stop_engine() -> None:
        if own_engine is not None:  # fails whatever is still queued, so the parts in flight end at once
            own_engine.shutdown(checkpoint=False)

    try:
        engine.check_role(role)  # the model just loaded may have no document map
        default_rows, default_bytes = default_part_size(engine)
        return _run_local(corpus, folder, engine, summary_k=summary_k, rows_per_part=rows_per_part or default_rows,
                          bytes_per_part=bytes_per_part or default_bytes, chunk_bytes=chunk_bytes,
                          max_in_flight=max_in_flight, parts_in_flight=parts_in_flight, progress=progress,
                          progress_every_s=progress_every_s, on_abort=stop_engine, called=called, role=role)
    finally:
        stop_engine()


def check_role_name(role: str) -> str:
    """`role` if it is an embedding role at all (whether the model serves it needs the model); else
    InvalidArgument naming it and the choices."""
    from ..embedding_roles import check_role

    try:
        return check_role(role)
    except ValueError as e:
        raise InvalidArgument(str(e)) from None


def default_part_size(engine: EngineAPI) -> tuple[int, int]:
    """(rows, text bytes) of the local job's part by default: a share for each engine process (each needs work
    from the parts in flight), GPU_PART_SCALE times larger when the model runs on a GPU."""
    from ..engine.api import model_device

    scale = GPU_PART_SCALE if (model_device(engine) or "cpu").startswith("cuda") else 1
    procs = getattr(engine, "procs", 1)
    return DEFAULT_ROWS_PER_PART * procs * scale, DEFAULT_BYTES_PER_PART * procs * scale


def build_engine(model: str, device: str, dtype: str | None, batch_tokens: int | None,
                 procs: int | str = 1) -> EngineAPI:
    """An engine for batch work: no durable store (its streams are temporary), `batch_tokens` per step, in this
    process or over `procs` engine processes (streamret.engine.shards)."""
    from ..engine import EngineConfig, start_engine

    config = EngineConfig() if batch_tokens is None else EngineConfig(max_step_tokens=batch_tokens)
    return start_engine(model, device, None, config, dtype, procs=procs)


def _run_local(corpus: Corpus, folder: PartFolder, engine: EngineAPI, *, summary_k: int, rows_per_part: int,
               bytes_per_part: int, chunk_bytes: int, max_in_flight: int, parts_in_flight: int,
               progress: bool, progress_every_s: float, on_abort, called: float, role: str) -> BatchReport:
    max_chunk = getattr(getattr(engine, "config", None), "max_chunk_bytes", chunk_bytes)
    if chunk_bytes > max_chunk:
        raise InvalidArgument(f"chunk_bytes={chunk_bytes} exceeds the engine's max_chunk_bytes={max_chunk}")
    start = time.monotonic()  # the model is loaded: the job's time starts (BatchReport.seconds)
    stats = engine.stats()  # (once: with engine processes a call to each of them)
    counters = engine_counters(stats)
    written = folder.prepare_resume(engine.fingerprint, role)
    next_index = folder.next_part()
    skipped = 0

    def rows_to_do() -> Iterator[pa.Table]:
        nonlocal skipped
        for table, n in skip_written(corpus.batches(), written.ids):
            skipped += n
            if table.num_rows:
                yield table

    bar = _Progress(engine, corpus, written.ids, progress, progress_every_s, stats["tokens_processed"])
    docs = errors = tokens = parts = 0
    done_lock = threading.Lock()
    done_bytes = committed_bytes = 0  # text bytes the engine finished / of committed parts, this run
    # (embed_part's future, the part's text bytes, its Parquet file as its rows come back), in order
    inflight: deque[tuple[Future, int, PartEncoder]] = deque()

    def on_bytes(n: int) -> None:  # on the parts' threads
        nonlocal done_bytes
        with done_lock:
            done_bytes += n
        bar.bytes_done(n)

    def commit_oldest() -> None:
        nonlocal docs, errors, tokens, parts, next_index, committed_bytes
        fut, part_bytes, encoder = inflight.popleft()
        try:
            while True:
                try:
                    out = fut.result(timeout=0.5)
                    break
                except FutureTimeout:
                    bar.refresh()
            check_engine_errors(out, f"part {next_index}")
        except BaseException:
            encoder.abandon()  # (not committed)
            raise
        with _sigint_deferred():  # a Ctrl-C now comes after the figures count the part it may have written
            folder.commit(next_index, encoder)
            next_index += 1
            parts += 1
            committed_bytes += part_bytes
            docs += out.num_rows
            errors += out.num_rows - out.column("error").null_count
            tokens += int(pc.sum(out.column("tokens")).as_py() or 0)
        bar.part_saved()

    pool = ThreadPoolExecutor(parts_in_flight, thread_name_prefix="streamret-batch")
    try:
        for part in cut_parts(rows_to_do(), rows_per_part, bytes_per_part):
            size = text_bytes(part)
            # the parts in flight hold at most bytes_per_part of text together (or one part, when it is
            # larger): an interruption loses at most that much work
            while inflight and (len(inflight) >= parts_in_flight
                                or sum(b for _, b, _ in inflight) + size > bytes_per_part):
                commit_oldest()
            encoder = PartEncoder()
            inflight.append((pool.submit(embed_part, engine, part, summary_k=summary_k, chunk_bytes=chunk_bytes,
                                         max_in_flight=max_in_flight, on_bytes=on_bytes, role=role,
                                         encoder=encoder), size, encoder))
        while inflight:
            commit_oldest()
    except KeyboardInterrupt as e:
        with done_lock:  # before the abort, whose failed rows would count their unread bytes as done
            lost = max(done_bytes - committed_bytes, 0)
        for fut, _, _ in inflight:
            fut.cancel()
        on_abort()
        now = time.monotonic()
        report = BatchReport(docs, errors, tokens, skipped, parts, now - start, now - called, role=role)
        raise EmbedInterrupted(report, folder.url, corpus.count_rows(), written.rows + docs, lost) from e
    except BaseException:
        for fut, _, _ in inflight:  # nothing more is committed; stop the parts in flight instead of finishing them
            fut.cancel()
        on_abort()
        raise
    finally:
        pool.shutdown(wait=True)
        for _, _, encoder in inflight:  # parts not committed (an error, an interrupt)
            encoder.abandon()
        bar.close()
    now = time.monotonic()
    used = {name: value - counters.get(name, 0.0) for name, value in engine_counters(engine.stats()).items()}
    return BatchReport(docs, errors, tokens, skipped, parts, now - start, now - called, engine_detail(used), role)


@contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold a SIGINT that arrives inside the block until its end (then raise KeyboardInterrupt, or call the
    handler there was). Only on the main thread, where Python runs signal handlers; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = signal.getsignal(signal.SIGINT)
    try:
        signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pending:
            if callable(previous):
                previous(signal.SIGINT, None)
            elif previous == signal.SIG_DFL:
                signal.raise_signal(signal.SIGINT)
            elif previous != signal.SIG_IGN:
                raise KeyboardInterrupt


def text_bytes(part: pa.Table) -> int:
    """The text bytes of a normalised part (null text: 0)."""
    return int(pc.sum(pc.binary_length(part.column("text"))).as_py() or 0)
