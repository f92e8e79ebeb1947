"""The batch job on Ray Data: the same rows in, the same rows out as the local job, spread over GPUs.

    read_parquet(corpus files)  ->  map_batches(normalize + skip written ids)  ->
    map_batches(EngineWorker, ActorPoolStrategy(size=workers): one engine per actor, `gpus_per_worker` GPUs each) ->
    write_parquet(output folder, files named ray_*.parquet)

Each actor loads the model once and embeds its batches with `embed_part`, exactly as the local job does.
Ray does not keep the corpus order across blocks, so a rerun skips every row whose id is already in
the output (the local job, which keeps the order, skips only as many rows per id as were written:
the two differ only when an id appears in several rows of the input).
"""

from __future__ import annotations

import sys
import time

import pyarrow as pa

from ..cluster.defaults import default_gpus_per_worker
from .corpus import Corpus, arrow_filesystem, normalize
from .parquet_job import BatchReport, build_engine, check_engine_errors, embed_part
from .parts import RAY_PREFIX, PartFolder


def _to_do(batch: pa.Table, *, id_column: str, text_column: str, written: frozenset) -> pa.Table:
    table = normalize(batch, id_column, text_column)
    if not written:
        return table
    return table.filter(pa.array([rid not in written for rid in table.column("id").to_pylist()], pa.bool_()))


class EngineWorker:
    """A Ray Data actor: one engine (one model on one device) embedding normalised batches."""

    def __init__(self, model: str, device: str, dtype: str | None, batch_tokens: int | None, summary_k: int,
                 chunk_bytes: int, max_in_flight: int):
        self.engine = build_engine(model, device, dtype, batch_tokens)
        self.options = dict(summary_k=summary_k, chunk_bytes=chunk_bytes, max_in_flight=max_in_flight)

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = embed_part(self.engine, batch, **self.options)
        check_engine_errors(out, "a Ray batch")  # fails the task: Ray retries it or stops the job
        return out


def run_on_ray(corpus: Corpus, folder: PartFolder, *, address: str | None, model: str, device: str,
               dtype: str | None, summary_k: int, batch_tokens: int | None, rows_per_part: int, chunk_bytes: int,
               max_in_flight: int, workers: int, gpus_per_worker: float | None) -> BatchReport:
    import ray
    from ray.data.datasource import FilenameProvider

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, log_to_driver=False)
    # the job's time starts once Ray is up (starting a local Ray is not the job's work; the local job's
    # starts once its model is loaded); the actors' model loads are counted
    start = time.monotonic()
    try:
        # Resuming needs the model's fingerprint to refuse another model's output: one Ray task loads the
        # model to compute it (not the driver, which may be a small head node); a fresh output needs none.
        fingerprint = ray.get(ray.remote(num_cpus=1)(_fingerprint).remote(model)) if folder.files() else None
        before = folder.prepare_resume(fingerprint)
        files_before = set(folder.files())
        if gpus_per_worker is None:
            gpus_per_worker = default_gpus_per_worker(device, ray.cluster_resources().get("GPU", 0))
        worker_device = "cuda" if gpus_per_worker > 0 else "cpu"
        _settle_fsspec_http()
        ds = ray.data.read_parquet(corpus.files, filesystem=arrow_filesystem(corpus.fs, corpus.local),
                                   file_extensions=None).select_columns([corpus.id_column, corpus.text_column])
        ds = ds.map_batches(_to_do, batch_format="pyarrow", fn_kwargs=dict(
            id_column=corpus.id_column, text_column=corpus.text_column, written=frozenset(before.ids)))
        ds = ds.map_batches(
            EngineWorker, batch_size=rows_per_part, batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=workers), num_gpus=gpus_per_worker, num_cpus=1,
            fn_constructor_kwargs=dict(model=model, device=worker_device, dtype=dtype, batch_tokens=batch_tokens,
                                       summary_k=summary_k, chunk_bytes=chunk_bytes, max_in_flight=max_in_flight),
        )
        ds.write_parquet(folder.root, filesystem=folder.arrow_fs(),
                         filename_provider=FilenameProvider(dataset_uuid=RAY_PREFIX.rstrip("_"), file_format="parquet"))
    finally:
        if started_here:
            ray.shutdown()
    after = folder.prepare_resume(fingerprint)
    written = after.rows - before.rows
    return BatchReport(documents=written, errors=after.errors - before.errors, tokens=after.tokens - before.tokens,
                       skipped=corpus.count_rows() - written, parts=len(set(folder.files()) - files_before),
                       seconds=time.monotonic() - start)


def _fingerprint(model: str) -> str:
    from ..model.spec import load_model

    return load_model(model, device="cpu", dtype="float32").fingerprint


def _settle_fsspec_http() -> None:
    """Ray Data's file listing probes fsspec's HTTP filesystem from several threads at once and expects
    ModuleNotFoundError when aiohttp is missing; racing imports of that failing module sometimes surface
    as a plain ImportError instead, which fails the read. Import it once here: without aiohttp it is then
    marked unavailable, so every later import fails fast and the same way."""
    try:
        import fsspec.implementations.http  # noqa: F401
    except ImportError:
        sys.modules["fsspec.implementations.http"] = None

