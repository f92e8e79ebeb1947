"""Session 51 (workplace VM): where a batch job's start goes before its first sub-batch is sent (bench/e2e.py's
batch parts read the first documents handed to the engine processes at 96-180 ms of the job's clock on the GPU
hosts, sessions 40 and 51: 14-19% of a long-document part's time, 10-12% of a short-document one's). The job
(`embed_parquet`) on a Parquet corpus like e2e's (SHORT documents of 3,600 bytes or LONG of 770,000 bytes of the
manual pages), with a stand-in engine of 9 processes whose `send` records the time and fails every sub-batch at
once (so the job ends right after its first sends). Prints the time from the call to the first send, and before each
pass the time to read the corpus alone (Corpus.batches); with PROFILE=1 a cProfile of the last pass.

    python bench/results/2026-12-07-s51/batch_start.py short 8000
    FIRST=4194304 python bench/results/2026-12-07-s51/batch_start.py short 8000   # a 4 MiB first part

(FIRST needs a tree of sessions 51-52: embed_parquet's first_part_bytes was removed in session 52, after its GPU A/B.)
"""
import cProfile
import gzip
import os
import pstats
import sys
import tempfile
import time
from concurrent.futures import Future
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from streamret.batch import sub_batches  # noqa: E402
from streamret.batch.parquet_job import embed_parquet  # noqa: E402

kind, n = sys.argv[1], int(sys.argv[2])
size = 3600 if kind == "short" else 770_000
raw = gzip.open(ROOT / ".device/text/man.txt.gz").read()
docs = [raw[(i * size) % (len(raw) - size):][:size].decode("utf-8", "ignore") for i in range(n)]


class StandIn:
    procs = 9
    fingerprint = "stand-in"
    embed_dim = 384
    config = None

    def check_role(self, role):
        pass

    def stats(self):
        return {"tokens_processed": 0}

    def embed_documents(self, docs, **options):
        def send(rank, op, args):
            sent.append(time.monotonic())
            f = Future()
            f.set_exception(RuntimeError("stand-in"))
            return f
        sub_batches.run_sub_batches(send, self.procs, docs, **options)


with tempfile.TemporaryDirectory() as tmp:
    corpus = os.path.join(tmp, "c.parquet")
    schema = pa.schema([("id", pa.string()), ("text", pa.large_string())])
    pq.write_table(pa.table({"id": [f"d{i}" for i in range(n)], "text": docs}, schema=schema), corpus)
    for rep in range(4):
        from streamret.batch.corpus import Corpus
        t_read = time.monotonic()
        n_read = sum(t.num_rows for t in Corpus(corpus).batches())
        t_read = time.monotonic() - t_read
        sent = []
        prof = cProfile.Profile() if os.environ.get("PROFILE") and rep == 3 else None
        t0 = time.monotonic()
        if prof:
            prof.enable()
        try:
            first = {"first_part_bytes": int(os.environ["FIRST"])} if os.environ.get("FIRST") else {}
            embed_parquet(corpus, os.path.join(tmp, f"out{rep}"), engine=StandIn(), progress=False,
                          bytes_per_part=192 << 20, rows_per_part=147_456, **first)
        except Exception as e:  # noqa: BLE001  (every row failed: the stand-in's doing)
            err = f"{type(e).__name__}: {str(e)[:200]}"
        else:
            err = None
        if prof:
            prof.disable()
        t1 = time.monotonic()
        if not sent:
            sys.exit(f"no sub-batch was sent: {err}")
        print(f"{kind} {n} docs ({n * size / 1e6:.1f} MB), pass {rep}: first send at {1e3 * (sent[0] - t0):.1f} ms, "
              f"{len(sent)} sends, job {1e3 * (t1 - t0):.1f} ms; the corpus alone read in {1e3 * t_read:.1f} ms ({err[:40]})", flush=True)
        if prof:
            pstats.Stats(prof).sort_stats("cumtime").print_stats(35)
