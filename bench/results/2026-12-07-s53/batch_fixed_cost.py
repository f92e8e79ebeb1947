"""Session 53, workplace VM: the batch job's own host work around the engines for e2e's short-document part.

embed_parquet on 8,000 documents of about 3,750 bytes (e2e's short part: 929 tokens each) with a stand-in engine
whose embed_documents fills each row at once (an embedding, 5 summary sentences, its token count): what is left is
the job's own work (reading and checking the Parquet, cutting parts, the rows, the output table, the part's write),
the start and tail an engine run cannot hide. Prints ms from the call to the hand-over, in the stand-in, and from
the hand-over's return to the job's end, best of --rounds.

    python bench/results/2026-12-07-s53/batch_fixed_cost.py [--docs 8000] [--rounds 5] [--profile]
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from streamret.batch.parquet_job import embed_parquet  # noqa: E402


class StandIn:
    """What embed_parquet reads of an engine of 9 processes on a GPU, with every row done at the hand-over."""

    procs = 9
    model_info = {"device": "cuda:0"}
    fingerprint = "stand-in"
    embed_dim = 384

    def __init__(self) -> None:
        self.handed: list[float] = []
        self.returned: list[float] = []
        rng = np.random.default_rng(0)
        self.vectors = rng.standard_normal((64, self.embed_dim)).astype(np.float32)

    def check_role(self, role: str) -> None:
        pass

    def stats(self) -> dict:
        return {"tokens_processed": 0}

    def embed_documents(self, docs: list, **options) -> None:
        self.handed.append(time.monotonic())
        k = options["summary_k"]
        for i, d in enumerate(docs):
            d.embedding = self.vectors[i % 64]
            d.tokens = len(d.data) // 4
            d.summary = [d.data[j * 80 : j * 80 + 80].decode(errors="replace") for j in range(k)]
        self.returned.append(time.monotonic())


def corpus(path: str, n: int, text: str, n_chars: int = 3750) -> None:
    doubled = text * (n * n_chars // len(text) + 2)
    docs = [doubled[i * n_chars : (i + 1) * n_chars] for i in range(n)]
    schema = pa.schema([("id", pa.string()), ("text", pa.large_string())])
    pq.write_table(pa.table({"id": [f"s{i}" for i in range(n)], "text": docs}, schema=schema), path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=8000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="py-spy-free: cProfile of one more round, top 25")
    args = ap.parse_args()
    text = gzip.open(ROOT / ".device/text/man.txt.gz", "rt", errors="replace").read()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "short.parquet")
        corpus(src, args.docs, text)
        for r in range(args.rounds + args.profile):
            eng = StandIn()
            out = os.path.join(tmp, f"out{r}")
            t0 = time.monotonic()
            if r == args.rounds:
                import cProfile
                import pstats

                prof = cProfile.Profile()
                prof.enable()
            report = embed_parquet(src, out, engine=eng, progress=False)
            t1 = time.monotonic()
            if r == args.rounds:
                prof.disable()
                pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
                continue
            assert report.documents == args.docs and report.errors == 0, report
            rows.append((1e3 * (eng.handed[0] - t0), 1e3 * (eng.returned[0] - eng.handed[0]),
                         1e3 * (t1 - eng.returned[0]), 1e3 * (t1 - t0)))
    rows = np.array(rows)
    print(f"{args.docs} documents, {args.rounds} rounds; ms: to the hand-over, in the stand-in, after it, whole")
    for name, col in zip(("before", "stand-in", "after", "whole"), rows.T):
        print(f"  {name:9s} best {col.min():7.1f}  median {np.median(col):7.1f}")


if __name__ == "__main__":
    main()
