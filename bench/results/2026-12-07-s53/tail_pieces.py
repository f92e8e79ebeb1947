"""Session 53: the batch job's tail for e2e's short-document part, piece by piece, on whatever host runs it: the
output table of 8,000 rows (384-dim embeddings, 5 summary sentences each) as embed_table builds it, the part's
Parquet encoding, its file write, the file's fsync and the folder's (PartFolder.commit's steps), in a temporary
folder (where bench/e2e.py's batch parts write). Three rounds after one not printed.

    python bench/results/2026-12-07-s53/tail_pieces.py [DIR]
"""

import io
import os
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from streamret.batch.parts import _write_options, with_fingerprint

n, dim = 8000, 384
rng = np.random.default_rng(0)
vecs = rng.standard_normal((64, dim)).astype(np.float32)


class Doc:
    def __init__(self, i: int):
        self.embedding, self.error, self.tokens = vecs[i % 64], None, 929
        self.summary = [("some words of a sentence " * 6)[j : j + 120] + str(i) for j in range(5)]


rows = [Doc(i) for i in range(n)]
ids = pa.chunked_array([pa.array([f"s{i}" for i in range(n)])])
for r in range(4):
    T = [time.perf_counter()]
    flat = np.zeros((n, dim), dtype=np.float32)
    valid = np.zeros(n, dtype=bool)
    for i, d in enumerate(rows):
        if d.embedding is not None and d.error is None:
            flat[i], valid[i] = d.embedding, True
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), dim, mask=pa.array(~valid))
    t = pa.table({"id": ids.combine_chunks(), "embedding": embedding,
                  "tokens": pa.array([d.tokens for d in rows], pa.int64()),
                  "summary": pa.array([d.summary for d in rows], pa.list_(pa.string())),
                  "error": pa.array([d.error for d in rows], pa.string())})
    t = with_fingerprint(t.combine_chunks(), "fp", "query")
    T.append(time.perf_counter())
    buf = io.BytesIO()
    pq.write_table(t, buf, **_write_options(t.schema))
    T.append(time.perf_counter())
    with tempfile.TemporaryDirectory(dir=sys.argv[1] if len(sys.argv) > 1 else None) as tmp:
        path = os.path.join(tmp, "part.parquet")
        with open(path, "wb") as f:
            f.write(buf.getbuffer())
            f.flush()
            T.append(time.perf_counter())
            os.fsync(f.fileno())
            T.append(time.perf_counter())
        os.replace(path, path + ".done")
        fd = os.open(tmp, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        T.append(time.perf_counter())
    if r:
        print(f"{buf.tell() / 2**20:.1f} MiB; ms: " + " ".join(
            f"{k} {1e3 * (b - a):.1f}" for k, a, b in zip(["table", "parquet", "write", "fsync", "dir"], T, T[1:])))
