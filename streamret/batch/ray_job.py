"""The batch job on Ray Data: the same rows in, the same rows out as the local job, spread over GPUs.

    read_parquet(corpus files; blocks of about --part-bytes)  ->  map_batches(normalize + skip written ids)  ->
    repartition(blocks of one batch)  ->  map_batches(EngineWorker: batches of about one part;
    ActorPoolStrategy(size=workers), `gpus_per_worker` GPUs and two batches at once per actor)  ->
    write_parquet(output folder, files ray_*.parquet)

Feeding the engines as the local job does: a batch is about one part of the local job (`bytes_per_part` of
text, at most `rows_per_part` rows; Ray Data batches by rows, so the rows per batch come from the text bytes
per row in the corpus's Parquet footers), and each actor embeds two batches at once, so that while one batch's
last documents finish the next one already fills the engine's steps. Small blocks let reading, skipping and
writing run beside the engines instead of before and after them.

Each actor loads the model once and embeds its batches with `embed_part`, exactly as the local job does (in the
job's embedding role, applied by the actor to its engine's plain embeddings, once).
Ray does not keep the corpus order across blocks, so a rerun skips every row whose id is already in
the output (the local job, which keeps the order, skips only as many rows per id as were written:
the two differ only when an id appears in several rows of the input).

Time: the job's `seconds` run from the moment the first actor's model is loaded and ready to the last row
written, as the local job's run from its model loaded; a small clock actor stamps both ends (and each actor's
load and busy times, for `BatchReport.detail`) on one clock.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..cluster.defaults import default_gpus_per_worker
from ..errors import FailedPrecondition
from .corpus import Corpus, arrow_filesystem, normalize
from .parquet_job import BatchReport, build_engine, check_engine_errors, embed_part, engine_counters, engine_detail
from .parts import RAY_PREFIX, PartFolder

BATCHES_PER_ACTOR = 2  # batches in one engine at once (the local job's parts_in_flight)
_FOOTERS_SAMPLED = 16  # files whose footers give the text bytes per row


def _to_do(batch: pa.Table, *, id_column: str, text_column: str, written: pa.Array) -> pa.Table:
    table = normalize(batch, id_column, text_column)
    if not len(written):
        return table
    # a null id is skipped when a row with a null id was written (skip_nulls=False matches nulls to nulls)
    done = pc.is_in(table.column("id"), value_set=written, skip_nulls=False)
    return table.filter(pc.invert(done))


def rows_per_batch(corpus: Corpus, bytes_per_part: int, rows_per_part: int) -> int:
    """Rows in a batch of about `bytes_per_part` of text (at least 1, at most `rows_per_part`), from the text
    column's uncompressed size in the first files' Parquet footers (a part of the local job: module doc). An
    estimate: that size also holds 4 bytes a value and the pages' min/max statistics, and a dictionary-encoded
    column of repeated texts is smaller than its text."""
    rows = size = 0
    for fragment in itertools.islice(corpus.dataset.get_fragments(), _FOOTERS_SAMPLED):
        meta = fragment.metadata
        paths = [meta.schema.column(i).path for i in range(meta.num_columns)]
        if corpus.text_column not in paths:
            continue  # the job reports it
        column = paths.index(corpus.text_column)
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            rows += group.num_rows
            size += group.column(column).total_uncompressed_size
    if not rows:
        return rows_per_part
    return int(np.clip(bytes_per_part * rows // max(size, 1), 1, rows_per_part))


class JobClock:
    """A Ray actor, the job's one clock (time.monotonic() here): when each engine actor's model was ready and
    how long it took to load, how long each actor had a batch in its engine, and when the last row was written;
    it also keeps each engine's latest step counters (parquet_job.engine_counters)."""

    def __init__(self):
        self.start = time.monotonic()
        self.ready: dict[str, tuple[float, float]] = {}  # actor -> (ready at, seconds its model took to load)
        self.busy: dict[str, float] = {}  # actor -> seconds with at least one batch in its engine
        self.counters: dict[str, dict[str, float]] = {}  # actor -> its engine's counters after its latest batch
        self.batches = 0

    def engine_ready(self, actor: str, load_s: float) -> None:
        self.ready.setdefault(actor, (time.monotonic(), load_s))  # a restarted actor keeps its first start

    def batch_done(self, actor: str, busy_s: float, counters: dict[str, float]) -> None:
        self.batches += 1
        self.busy[actor] = self.busy.get(actor, 0.0) + busy_s
        self.counters[actor] = counters

    def stop(self) -> dict:
        """The figures, in seconds from the clock's start (about when Ray was up)."""
        now = time.monotonic()
        ready = sorted(at - self.start for at, _ in self.ready.values())
        counters: dict[str, float] = {}
        for each in self.counters.values():
            for name, value in each.items():
                counters[name] = counters.get(name, 0.0) + value
        return {"end": now - self.start, "ready": ready, "load_s": [load for _, load in self.ready.values()],
                "busy_s": sum(self.busy.values()), "batches": self.batches, "counters": counters}


class EngineWorker:
    """A Ray Data actor: one engine (one model on one device) embedding normalised batches, up to
    BATCHES_PER_ACTOR at once (the engine is thread-safe; its scheduler packs the batches' documents together)."""

    def __init__(self, model: str, device: str, dtype: str | None, batch_tokens: int | None, summary_k: int,
                 chunk_bytes: int, max_in_flight: int, clock, role: str = "query"):
        import ray

        t0 = time.monotonic()
        self.engine = build_engine(model, device, dtype, batch_tokens)
        self.engine.check_role(role)  # checked up front by run_on_ray; an actor on another node checks its own copy
        self.options = dict(summary_k=summary_k, chunk_bytes=chunk_bytes, max_in_flight=max_in_flight, role=role)
        self.clock = clock
        self.name = ray.get_runtime_context().get_actor_id() or "driver"
        self._lock = threading.Lock()
        self._active = 0
        self._busy_since = 0.0
        clock.engine_ready.remote(self.name, time.monotonic() - t0)  # clock: a JobClock actor

    def __call__(self, batch: pa.Table) -> pa.Table:
        self._enter()
        try:
            out = embed_part(self.engine, batch, **self.options)
        finally:
            self._leave()
        check_engine_errors(out, "a Ray batch")  # fails the task: Ray retries it or stops the job
        return out

    def _enter(self) -> None:
        with self._lock:
            if not self._active:
                self._busy_since = time.monotonic()
            self._active += 1

    def _leave(self) -> None:
        with self._lock:
            self._active -= 1
            # busy time is counted once the engine has no batch again: since it last had none
            busy = 0.0 if self._active else time.monotonic() - self._busy_since
        self.clock.batch_done.remote(self.name, busy, engine_counters(self.engine.stats()))


def run_on_ray(corpus: Corpus, folder: PartFolder, *, address: str | None, model: str, device: str,
               dtype: str | None, summary_k: int, batch_tokens: int | None, rows_per_part: int, bytes_per_part: int,
               chunk_bytes: int, max_in_flight: int, workers: int, gpus_per_worker: float | None,
               called: float, role: str = "query") -> BatchReport:
    """`called`: time.monotonic() when the job was asked for (BatchReport.total_seconds starts there). `role`: the
    embeddings' role (parquet_job.embed_parquet), checked against the model before anything is read or written."""
    import ray
    from ray.data.datasource import FilenameProvider

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, log_to_driver=False)
    try:
        clock = ray.remote(num_cpus=0)(JobClock).remote()
        # Resuming needs the model's fingerprint to refuse another model's output, and the role "document" needs
        # the model's document map: one Ray task loads the model to tell (not the driver, which may be a small
        # head node); a fresh output in role "query" needs neither.
        fingerprint = None
        if folder.files() or role != "query":
            fingerprint, missing = ray.get(ray.remote(num_cpus=1)(_model_facts).remote(model, role))
            if missing:
                raise FailedPrecondition(missing)
        before = folder.prepare_resume(fingerprint, role)
        files_before = set(folder.files())
        if gpus_per_worker is None:
            gpus_per_worker = default_gpus_per_worker(device, ray.cluster_resources().get("GPU", 0))
        worker_device = "cuda" if gpus_per_worker > 0 else "cpu"
        _settle_fsspec_http()
        ds = ray.data.read_parquet(corpus.files, filesystem=arrow_filesystem(corpus.fs, corpus.local),
                                   file_extensions=None).select_columns([corpus.id_column, corpus.text_column])
        # this dataset's own context (read_parquet copied the current one): blocks of about one part
        ds.context.target_max_block_size = bytes_per_part
        written = pa.array(list(before.ids), corpus.id_type)
        ds = ds.map_batches(_to_do, batch_format="pyarrow", fn_kwargs=dict(
            id_column=corpus.id_column, text_column=corpus.text_column, written=written))
        # blocks of exactly one batch, so that each call gets a whole batch (no leftover rows of a block
        # as a small batch of their own)
        batch_rows = rows_per_batch(corpus, bytes_per_part, rows_per_part)
        ds = ds.repartition(target_num_rows_per_block=batch_rows, strict=True)
        ds = ds.map_batches(
            EngineWorker, batch_size=batch_rows, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=workers, max_concurrent_calls_per_actor=BATCHES_PER_ACTOR,
                                               enable_true_multi_threading=True),
            num_gpus=gpus_per_worker, num_cpus=1,
            fn_constructor_kwargs=dict(model=model, device=worker_device, dtype=dtype, batch_tokens=batch_tokens,
                                       summary_k=summary_k, chunk_bytes=chunk_bytes, max_in_flight=max_in_flight,
                                       clock=clock, role=role),
        )
        ds.write_parquet(folder.root, filesystem=folder.arrow_fs(),
                         filename_provider=FilenameProvider(dataset_uuid=RAY_PREFIX.rstrip("_"), file_format="parquet"))
        # the actors sent their last batch_done before returning the rows that the write waited for
        times = ray.get(clock.stop.remote())
    finally:
        if started_here:
            ray.shutdown()
    after = folder.prepare_resume(fingerprint, role)
    written_rows = after.rows - before.rows
    start = times["ready"][0] if times["ready"] else 0.0  # no actor ready: nothing was left to embed
    return BatchReport(documents=written_rows, errors=after.errors - before.errors,
                       tokens=after.tokens - before.tokens, skipped=corpus.count_rows() - written_rows,
                       parts=len(set(folder.files()) - files_before), seconds=times["end"] - start,
                       total_seconds=time.monotonic() - called, detail=_detail(times, workers), role=role)


def _detail(times: dict, workers: int) -> str:
    """Where the Ray job's time went, for the one line after the job's figures."""
    if not times["ready"]:
        return f"Ray: no engine actor was ready before the job ended ({times['end']:.1f} s after Ray was up)"
    span = times["end"] - times["ready"][0]
    # the actors' busy time and the clock's stamps differ by a message's delay: a busy share may pass 100%
    first, last = times["ready"][0], times["ready"][-1]
    ready = f"{first:.1f} s" + (f" (the last {last:.1f} s)" if len(times["ready"]) > 1 else "")
    return (f"Ray: {workers} engine actor{'s' if workers > 1 else ''}, the first ready {ready} after Ray was up "
            f"(model loaded in {max(times['load_s']):.1f} s); {times['batches']} batches; engines busy "
            f"{times['busy_s'] / max(span * len(times['ready']), 1e-9):.0%} of the {span:.1f} s from the first "
            f"ready to the last row written; {engine_detail(times['counters'])}")


def _model_facts(model: str, role: str) -> tuple[str, str]:
    """(the model's fingerprint, "" or why it does not serve `role`: Roles.check's message)."""
    from ..model.spec import load_model

    loaded = load_model(model, device="cpu", dtype="float32")
    try:
        loaded.roles.check(role)
    except (LookupError, ValueError) as e:
        return loaded.fingerprint, str(e)
    return loaded.fingerprint, ""


def _settle_fsspec_http() -> None:
    """Ray Data's file listing probes fsspec's HTTP filesystem from several threads at once and expects
    ModuleNotFoundError when aiohttp is missing; racing imports of that failing module sometimes surface
    as a plain ImportError instead, which fails the read. Import it once here: without aiohttp it is then
    marked unavailable, so every later import fails fast and the same way."""
    try:
        import fsspec.implementations.http  # noqa: F401
    except ImportError:
        sys.modules["fsspec.implementations.http"] = None
