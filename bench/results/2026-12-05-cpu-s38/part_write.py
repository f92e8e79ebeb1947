"""PartFolder.commit of a batch job's output part: N rows (384-dim embeddings, 5 summary sentences each), best of 7,
alternating the tree given (its streamret) with this one's. python part_write.py ROOT [N]"""
import sys, tempfile, time
sys.path.insert(0, sys.argv[1])
import numpy as np, pyarrow as pa
from streamret.batch.parts import PartFolder
n = int(sys.argv[2]) if len(sys.argv) > 2 else 8000
rng = np.random.default_rng(0)
flat = rng.standard_normal((n, 384)).astype(np.float32)
table = pa.table({"id": pa.array([f"doc-{i}" for i in range(n)]),
                  "embedding": pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), 384),
                  "tokens": pa.array(rng.integers(100, 1000, n)),
                  "summary": pa.array([[f"Sentence {j} of document {i}, as a summary holds it." for j in range(5)]
                                       for i in range(n)], pa.list_(pa.string())),
                  "error": pa.nulls(n, pa.string())})
best = 1e9
with tempfile.TemporaryDirectory() as d:
    folder = PartFolder(d)
    for k in range(7):
        t0 = time.perf_counter(); path = folder.commit(k, table); best = min(best, time.perf_counter() - t0)
    import os
    size = os.path.getsize(path)
print(f"{sys.argv[1]}: commit of {n} rows {best*1e3:.1f} ms, {size/2**20:.1f} MiB")
