"""Session 54, workplace VM: the local batch job's tail (from the engines' last results to the job's end) with
engine processes that answer sub-batches over time, as on a GPU.

embed_parquet on 8,000 documents of about 3,750 bytes (e2e's short part) with a stand-in sharded engine: its
embed_documents runs the real `run_sub_batches` (sub-batches, guided sizes, on_row_done as each comes back) over
`procs` fake engine processes that answer a sub-batch after its share of --engine-ms (text bytes over the whole
part's, spread over the processes). What the job does after the last answer (the output rows, the Parquet
encoding, the write and fsyncs) is the tail that a GPU run cannot hide. Prints ms from the last answer to the
job's end and the whole job, best and median of --rounds.

    python bench/results/2026-12-07-s54/batch_tail.py [--docs 8000] [--rounds 5] [--engine-ms 800]
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "bench/results/2026-12-07-s53"))
from batch_fixed_cost import StandIn, corpus  # noqa: E402  (session 53's: the same 8,000 short documents)

from streamret.batch.parquet_job import embed_parquet  # noqa: E402
from streamret.batch.sub_batches import run_sub_batches  # noqa: E402


class Timed(StandIn):
    """Session 53's stand-in (what embed_parquet reads of a ShardedEngine), with engine processes that take time."""

    def __init__(self, procs: int, engine_s: float, total_bytes: int) -> None:
        super().__init__()
        self.procs, self.engine_s, self.total_bytes = procs, engine_s, total_bytes
        self.last_answer = 0.0
        self._busy_until = [0.0] * procs
        self._lock = threading.Lock()

    def _send(self, rank: int, op: str, args: tuple) -> Future:
        fut: Future = Future()
        if op != "embed_documents":
            fut.set_result(None)
            return fut
        _, rows, _, texts, _, options = args
        k = options["summary_k"]
        cost = self.engine_s * self.procs * sum(map(len, texts)) / self.total_bytes
        with self._lock:  # one engine process runs its sub-batches one after the other
            start = max(time.monotonic(), self._busy_until[rank])
            self._busy_until[rank] = start + cost

        def answer() -> None:
            time.sleep(max(0.0, start + cost - time.monotonic()))
            vectors = self.vectors[np.arange(len(rows)) % 64]
            summaries = [[t[j * 80: j * 80 + 80].decode(errors="replace") for j in range(k)] for t in texts]
            self.last_answer = time.monotonic()
            fut.set_result(([len(t) // 4 for t in texts], vectors, summaries, [None] * len(rows),
                            [len(t) for t in texts], [True] * len(rows)))

        threading.Thread(target=answer, daemon=True).start()
        return fut

    def embed_documents(self, docs: list, **options) -> None:
        run_sub_batches(self._send, self.procs, docs, **options)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=8000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--engine-ms", type=float, default=800.0, help="the engines' time for the whole part")
    ap.add_argument("--procs", type=int, default=9)
    args = ap.parse_args()
    text = gzip.open(ROOT / ".device/text/man.txt.gz", "rt", errors="replace").read()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "short.parquet")
        corpus(src, args.docs, text)
        total = sum(len(t.as_py().encode()) for t in pq.read_table(src).column("text"))
        for r in range(args.rounds + 1):
            eng = Timed(args.procs, args.engine_ms / 1e3, total)
            out = os.path.join(tmp, f"out{r}")
            t0 = time.monotonic()
            report = embed_parquet(src, out, engine=eng, progress=False)
            t1 = time.monotonic()
            assert report.documents == args.docs and report.errors == 0, report
            if r:  # the first round warms the caches
                rows.append((1e3 * (t1 - eng.last_answer), 1e3 * (t1 - t0)))
    rows = np.array(rows)
    print(f"{args.docs} documents, engines {args.engine_ms:g} ms over {args.procs} processes, {args.rounds} rounds")
    for name, col in zip(("after the last answer", "whole job"), rows.T):
        print(f"  {name:22s} best {col.min():7.1f}  median {np.median(col):7.1f} ms")


if __name__ == "__main__":
    main()
