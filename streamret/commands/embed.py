"""`streamret embed`: a Parquet corpus -> embeddings and summaries, one row per document.

    streamret embed corpus/ -o embeddings/ --model random:tiny
    streamret embed 's3://bucket/books/*.parquet' -o s3://bucket/embeddings --summary-k 3 --device cuda
    streamret embed corpus/ -o embeddings/ --ray                # on Ray Data (RAY_ADDRESS or a local Ray)
    streamret embed corpus/ -o embeddings/ --ray ray://head:10001 --workers 8
    streamret embed corpus/ -o index/ --model models/retnet --role document   # whole documents for an index

OUTPUT is a folder of Parquet parts (id, embedding, tokens, summary, error), read as one table with
`pyarrow.parquet.read_table(OUTPUT)`. A part holds about --part-bytes of text (1 MiB per engine process by
default, 16 MiB on a GPU), and the parts being embedded hold no more than that together, so a crash or Ctrl-C
loses at most one part's work: Ctrl-C prints one line saying what is saved and the command that resumes (the
same command: it skips the rows already written). Progress goes to stderr in text bytes against the corpus total, with
the ETA: a bar on a terminal, a line every --progress-every-s seconds otherwise.

The last line gives the tokens/s from the model loaded and ready (with --ray: the first engine actor's) to
the last row written, and the whole job's seconds (model load; with --ray also Ray's and the actors' start);
with --ray one more line says when the actors were ready and how busy their engines were.

--role document writes each document's embedding with the model's document map applied (for an index of whole
documents that plain query embeddings search; streamret/model/document_map.py); the model must ship a map, and a
model without one is refused before anything is read or written. An output folder holds one role: resuming it
with another --role is refused.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys

from streamret.cluster.defaults import GPUS_PER_WORKER_HELP

from ..embedding_roles import ROLES
from . import ENGINE_PROCS_HELP, add_model_args, check_engine_procs


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
    p.add_argument("--role", choices=ROLES, default="query",
                   help="the embeddings' role: query (default: the plain embedding, as the model computes it; "
                        "queries, passages, any text) or document (the model's document map applied: whole "
                        "documents for an index that plain query embeddings search; needs a model that ships a "
                        "map, as the bundled default does). One output folder holds one role")
    p.add_argument("--engine-procs", default="auto", metavar="N", help=ENGINE_PROCS_HELP)
    p.add_argument("--batch-tokens", type=int,
                   help="tokens per engine step (default: the engine's, 32768 on a GPU and 16384 on the CPU)")
    p.add_argument("--part-bytes", type=parse_size, default=None, metavar="SIZE",
                   help="text per output part, e.g. 256K, 1M, 64M (default 1M per engine process, 16M per engine "
                        "process on a GPU, 1M with --ray; "
                        "a larger document is a part of "
                        "its own); an interruption loses at most one part's work (the local job; --ray embeds "
                        "batches of about this much text and writes Ray Data's blocks)")
    p.add_argument("--rows-per-part", type=int, default=None,
                   help="at most this many rows per part (default 1024 per engine process, 16384 on a GPU)")
    p.add_argument("--progress-every-s", type=float, default=10.0, metavar="S",
                   help="seconds between progress lines when stderr is not a terminal (default 10; on a "
                        "terminal it is a bar)")
    p.add_argument("--no-progress", action="store_true", help="no progress on stderr")
    ray = p.add_argument_group("Ray")
    ray.add_argument("--ray", nargs="?", const="auto", metavar="ADDRESS",
                     help="run on Ray Data; ADDRESS of the cluster (default: RAY_ADDRESS, else a local Ray)")
    ray.add_argument("--workers", type=int, default=1, help="engine actors (default 1)")
    ray.add_argument("--gpus-per-worker", type=float, help=GPUS_PER_WORKER_HELP)
    p.set_defaults(run=run)


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(text: str) -> int:
    """Bytes from `1048576`, `512K`, `1M`, `1.5M`, `2G` (binary units; KiB, MB... also read)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?)(?:i?B)?\s*", str(text), re.IGNORECASE)
    size = int(float(m.group(1)) * _UNITS[m.group(2).upper()]) if m else 0
    if size < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size of at least one byte; give e.g. 1048576, 256K, "
                                         "1M or 2G")
    return size


def run(args: argparse.Namespace) -> int:
    from streamret.batch import EmbedInterrupted, embed_parquet
    from streamret.progress import format_bytes

    check_engine_procs(args)
    if not args.progress_every_s > 0:
        raise ValueError(f"--progress-every-s must be > 0 seconds, got {args.progress_every_s}")
    resume = "resume with: " + shlex.join(["streamret", *getattr(args, "argv", sys.argv[1:])])
    try:
        report = embed_parquet(
            args.input, args.output, model=args.model, device=args.device, dtype=args.dtype,
            id_column=args.id_column, text_column=args.text_column, summary_k=args.summary_k,
            batch_tokens=args.batch_tokens, engine_procs=args.engine_procs, rows_per_part=args.rows_per_part,
            bytes_per_part=args.part_bytes,
            progress=not args.no_progress, progress_every_s=args.progress_every_s,
            ray=args.ray, ray_workers=args.workers, gpus_per_worker=args.gpus_per_worker, role=args.role,
        )
    except EmbedInterrupted as e:
        print(f"streamret embed: interrupted: {e.output} holds {e.rows_written} of {e.corpus_rows} documents "
              f"({e.report.parts} part{'' if e.report.parts == 1 else 's'} written by this run); lost: "
              f"{format_bytes(e.lost_bytes)} of text in flight; {resume}", file=sys.stderr, flush=True)
        return 130
    except KeyboardInterrupt:
        print(f"streamret embed: interrupted (before the job's first part, or on Ray): {args.output} keeps every "
              f"part written so far; {resume}", file=sys.stderr, flush=True)
        return 130
    print(f"{report.documents} documents ({report.errors} with an error) and {report.tokens} tokens in "
          f"{report.seconds:.1f} s ({report.tokens_per_s:,.0f} tokens/s, from the model ready to the last row "
          f"written; {report.total_seconds:.1f} s in all) -> {args.output} (role {report.role}); {report.skipped} "
          "rows were already written", flush=True)
    if report.detail:
        print(report.detail, flush=True)
    return 0
