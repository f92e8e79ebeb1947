"""Batch benchmark: Parquet corpus -> embeddings (streamret.batch.embed_parquet), tokens/s, next to the
same model's engine throughput and packed-forward throughput at the same shapes (bench/engine.py).

    python3 bench/batch.py --device cpu --model tiny --long-docs 4 --long-tokens 32768 \\
        --short-docs 300 --short-tokens 400                   # CPU: about a minute
    source bench/device_env.sh
    python3 bench/batch.py --device cuda --model small       # 200 x 200k-token documents + 20,000 short ones

A synthetic corpus (byte tokenizer: one token per byte of ASCII text, words and sentence ends) is
written as two Parquet files, long documents and short ones, and each is embedded by one timed
`embed_parquet` call: reading, chunking, the engine, extractive summaries, writing the parts.
Reference figures for the long documents, with the same model, engine settings and concurrency:
- engine: bench/engine.py's bench_engine, the same number of streams each appending one chunk of the
  batch job's chunk size per round (no Parquet, no per-document open/close/embedding/summary);
- packed: bench/engine.py's bench_packed, the model's forward alone on packed batches shaped like the
  engine's steps.
ratio_vs_engine and ratio_vs_packed = batch tokens/s / reference tokens/s (acceptance on the H200:
ratio_vs_engine >= 0.8). With --repeats N every measurement is taken N times, alternating, and the
best of each is compared (a shared CPU is noisy); all runs are kept in the JSON.

Writes DIR/batch.json (DIR: --out, else $OUT, else .).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time

import pyarrow as pa
import pyarrow.parquet as pq
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
import engine as engine_bench  # noqa: E402  (bench/engine.py, beside this file)

from streamret.batch import embed_parquet, embed_table  # noqa: E402
from streamret.batch.arrow_table import DEFAULT_CHUNK_BYTES, DEFAULT_IN_FLIGHT  # noqa: E402
from streamret.engine import Engine, EngineConfig  # noqa: E402
from streamret.engine.config import default_step_tokens  # noqa: E402
from streamret.model.spec import load_model  # noqa: E402

# the job's default before issue 17 (now 1 MiB an engine process, 16 on a GPU): the conditions RESULTS has
BENCH_BYTES_PER_PART = 32 << 20


def write_corpus(path: str, prefix: str, n_docs: int, n_tokens: int, seed: int) -> int:
    """n_docs ASCII documents of n_tokens bytes (16 distinct texts, reused) as one Parquet file."""
    texts = [t.decode() for t in engine_bench.text_chunks(min(n_docs, 16), n_tokens, seed)]
    rows_per_group = max(1, (64 << 20) // max(n_tokens, 1))
    schema = pa.schema([("id", pa.string()), ("text", pa.large_string())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, n_docs, rows_per_group):
            ids = [f"{prefix}{i}" for i in range(start, min(n_docs, start + rows_per_group))]
            writer.write_table(pa.table({"id": ids, "text": [texts[i % len(texts)] for i in range(len(ids))]},
                                        schema=schema))
    return n_docs * n_tokens


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sync(engine) -> None:
    if getattr(engine, "model", None) is not None:  # engine processes (ShardedEngine) wait for their own device
        engine_bench.sync(engine.model.device)


def run_batch(engine, corpus: str, out: str, args) -> dict:
    _sync(engine)
    before = engine.stats()
    report = embed_parquet(corpus, out, engine=engine, summary_k=args.summary_k, chunk_bytes=args.chunk_bytes,
                           max_in_flight=args.docs_in_flight, parts_in_flight=args.parts_in_flight,
                           bytes_per_part=getattr(args, "part_bytes", BENCH_BYTES_PER_PART), progress=args.progress)
    job_ended_at = time.monotonic()  # (the job's span: report.seconds up to here; e2e.py's timeline)
    _sync(engine)
    after = engine.stats()
    steps = after["steps"] - before["steps"]
    return dict(documents=report.documents, errors=report.errors, tokens=report.tokens, seconds=report.seconds,
                parts=report.parts, tokens_per_s=report.tokens_per_s, documents_per_s=report.documents / report.seconds,
                steps=steps, tokens_per_step=(after["tokens_processed"] - before["tokens_processed"]) / max(1, steps),
                loop_model_seconds=after["loop_model_seconds"] - before["loop_model_seconds"],
                peak_rss_mb=peak_rss_mb(), job_ended_at=job_ended_at)


def best(rows: list[dict]) -> dict:
    return max(rows, key=lambda r: r["tokens_per_s"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default=None, help="default: bf16 on CUDA, fp32 on the CPU")
    p.add_argument("--model", default="small", help="random preset (tiny, small, fla-1.3b) or a checkpoint folder")
    p.add_argument("--long-docs", default=200, type=int)
    p.add_argument("--long-tokens", default=200_000, type=int)
    p.add_argument("--short-docs", default=20_000, type=int)
    p.add_argument("--short-tokens", default=1000, type=int)
    p.add_argument("--summary-k", default=5, type=int)
    p.add_argument("--step-tokens", default=None, type=int,
                   help="the engine's max_step_tokens (--batch-tokens; default: the engine's own for the device)")
    p.add_argument("--kernel-chunk", default=64, type=int, help="chunk size of the chunkwise retention form")
    p.add_argument("--chunk-bytes", default=DEFAULT_CHUNK_BYTES, type=int, help="bytes per append of a document")
    p.add_argument("--docs-in-flight", default=DEFAULT_IN_FLIGHT, type=int, help="documents in flight per part")
    p.add_argument("--parts-in-flight", default=2, type=int)
    p.add_argument("--part-bytes", default=BENCH_BYTES_PER_PART, type=int,
                   help="text bytes per part (default 32 MiB, as the figures in RESULTS were measured; the job's "
                        "own default is 1 MiB an engine process, 16 MiB on a GPU: an interruption loses little)")
    p.add_argument("--threads", default=1, type=int, help="torch CPU threads")
    p.add_argument("--min-seconds", default=2.0, type=float, help="time each reference for at least this long")
    p.add_argument("--repeats", default=1, type=int, help="measure everything this many times; report the best")
    p.add_argument("--corpus-dir", help="where to write the corpus and outputs (default: a temporary folder)")
    p.add_argument("--progress", action="store_true", help="show the tqdm bar")
    p.add_argument("--out", default=os.environ.get("OUT", "."))
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(args.threads)

    spec = args.model if os.path.isdir(args.model) else f"random:{args.model}"
    loaded = load_model(spec, args.device, args.dtype)
    device = loaded.model.device
    if args.step_tokens is None:
        args.step_tokens = default_step_tokens(device.type)
    meta = dict(
        date=time.strftime("%Y-%m-%d"), command=" ".join(sys.argv), model=spec, device=str(device),
        device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        cpu_threads=torch.get_num_threads(), torch=torch.__version__, pyarrow=pa.__version__,
        python=platform.python_version(), dtype=str(loaded.model.dtype),
    )
    try:
        import triton

        meta["triton"] = triton.__version__
    except ImportError:
        meta["triton"] = None
    print(json.dumps(meta), flush=True)
    results = dict(meta=meta)

    def save() -> None:
        with open(os.path.join(args.out, "batch.json"), "w") as f:
            json.dump(results, f, indent=1)

    # References for the long documents: as many streams as the batch job had long documents in flight,
    # each appending one chunk of the batch job's size per round.
    streams = min(args.long_docs, args.docs_in_flight * args.parts_in_flight)
    chunk = min(args.chunk_bytes, args.long_tokens)
    ns = argparse.Namespace(step_tokens=args.step_tokens, kernel_chunk=args.kernel_chunk, segment_by="sentence",
                            rounds=2, min_seconds=args.min_seconds)
    runs = {"batch_long": [], "engine_long": [], "packed_long": [], "batch_short": []}
    with tempfile.TemporaryDirectory(dir=args.corpus_dir) as tmp:
        t0 = time.perf_counter()
        long_tokens = write_corpus(f"{tmp}/long.parquet", "long-", args.long_docs, args.long_tokens, seed=1)
        short_tokens = write_corpus(f"{tmp}/short.parquet", "short-", args.short_docs, args.short_tokens, seed=2)
        results["corpus"] = dict(long_docs=args.long_docs, long_tokens=long_tokens, short_docs=args.short_docs,
                                 short_tokens=short_tokens, write_seconds=time.perf_counter() - t0)
        print(json.dumps(results["corpus"]), flush=True)

        config = EngineConfig(max_step_tokens=args.step_tokens, chunk_size=args.kernel_chunk)
        for r in range(args.repeats):  # alternate the measurements, so that a busy spell hits them alike
            with Engine(loaded, None, config) as engine:
                warm = pa.table({"id": ["w0", "w1"], "text": ["Warm up. Kernels compile here.", "x " * 5000]})
                embed_table(engine, warm, summary_k=args.summary_k)  # allocations, kernel compilation
                for name in ("long", "short"):
                    row = run_batch(engine, f"{tmp}/{name}.parquet", f"{tmp}/out-{name}-{r}", args)
                    del row["job_ended_at"]  # (a stamp for e2e.py's timeline)
                    runs[f"batch_{name}"].append(row)
                    print(f"batch {name:5s}: {row['documents']:,} docs, {row['tokens']:,} tokens in "
                          f"{row['seconds']:.1f}s = {row['tokens_per_s']:,.0f} tok/s ({row['documents_per_s']:,.1f} "
                          f"docs/s, {row['tokens_per_step']:,.0f} tokens/step), peak RSS {row['peak_rss_mb']:,.0f} MiB",
                          flush=True)
            eng = engine_bench.bench_engine(loaded, streams, chunk, ns)
            packed = engine_bench.bench_packed(loaded.model, streams, chunk, eng["tokens"], ns)
            runs["engine_long"].append(eng)
            runs["packed_long"].append(packed)
            print(f"engine long: {streams} streams x {chunk}-token chunks = {eng['tokens_per_s']:,.0f} tok/s; "
                  f"packed {packed['batch']} = {packed['tokens_per_s']:,.0f} tok/s", flush=True)
            results["runs"] = runs
            save()

    for name, rows in runs.items():
        results[name] = best(rows)
    batch = results["batch_long"]["tokens_per_s"]
    results["ratio_vs_engine"] = batch / results["engine_long"]["tokens_per_s"]
    results["ratio_vs_packed"] = batch / results["packed_long"]["tokens_per_s"]
    save()
    print(f"best of {args.repeats}: batch long {batch:,.0f} tok/s, short {results['batch_short']['tokens_per_s']:,.0f} "
          f"tok/s; engine {results['engine_long']['tokens_per_s']:,.0f}; packed "
          f"{results['packed_long']['tokens_per_s']:,.0f}; batch/engine = {results['ratio_vs_engine']:.2f}, "
          f"batch/packed = {results['ratio_vs_packed']:.2f}", flush=True)


if __name__ == "__main__":
    main()
