"""`streamret embed`: a Parquet corpus -> embeddings and summaries, one row per document.

    streamret embed corpus/ -o embeddings/ --model random:tiny
    streamret embed 's3://bucket/books/*.parquet' -o s3://bucket/embeddings --summary-k 3 --device cuda
    streamret embed corpus/ -o embeddings/ --ray                # on Ray Data (RAY_ADDRESS or a local Ray)
    streamret embed corpus/ -o embeddings/ --ray ray://head:10001 --workers 8

OUTPUT is a folder of Parquet parts (id, embedding, tokens, summary, error), read as one table with
`pyarrow.parquet.read_table(OUTPUT)`. Rerunning the same command after a crash or Ctrl-C skips the
rows already written and finishes the job.
"""

from __future__ import annotations

import argparse

from streamret.cluster.defaults import GPUS_PER_WORKER_HELP

from . import add_model_args


def register(subparsers) -> None:
    p = subparsers.add_parser("embed", help="embed every document of a Parquet corpus (resumable; --ray to scale)")
    p.add_argument("input", metavar="INPUT", help="a Parquet file, a folder, a glob, or an fsspec URL of those")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                   help="folder (or fsspec URL) for the Parquet parts; rows already there are skipped")
    p.add_argument("--id-column", default="id", help="column with each document's id, string or integer "
                                                     "(default: id)")
    p.add_argument("--text-column", default="text", help="column with each document's text (default: text)")
    p.add_argument("--summary-k", type=int, default=5, help="sentences per extractive summary (default 5; 0: none)")
    add_model_args(p)
    p.add_argument("--batch-tokens", type=int, help="tokens per engine step (default: the engine's 16384)")
    p.add_argument("--rows-per-part", type=int, default=1024, help="rows per output file (default 1024)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    ray = p.add_argument_group("Ray")
    ray.add_argument("--ray", nargs="?", const="auto", metavar="ADDRESS",
                     help="run on Ray Data; ADDRESS of the cluster (default: RAY_ADDRESS, else a local Ray)")
    ray.add_argument("--workers", type=int, default=1, help="engine actors (default 1)")
    ray.add_argument("--gpus-per-worker", type=float, help=GPUS_PER_WORKER_HELP)
    p.set_defaults(run=run)



def run(args: argparse.Namespace) -> int:
    from streamret.batch import embed_parquet

    report = embed_parquet(
        args.input, args.output, model=args.model, device=args.device, dtype=args.dtype,
        id_column=args.id_column, text_column=args.text_column, summary_k=args.summary_k,
        batch_tokens=args.batch_tokens, rows_per_part=args.rows_per_part, progress=not args.no_progress,
        ray=args.ray, ray_workers=args.workers, gpus_per_worker=args.gpus_per_worker,
    )
    print(f"{report.documents} documents ({report.errors} with an error) and {report.tokens} tokens in "
          f"{report.seconds:.1f} s ({report.tokens_per_s:,.0f} tokens/s) -> {args.output}; "
          f"{report.skipped} rows were already written", flush=True)
    return 0
