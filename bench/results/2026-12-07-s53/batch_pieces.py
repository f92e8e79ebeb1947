# Session 53 (workplace VM): the batch job's steps before the hand-over, one by one, for /tmp/short.parquet (8,000
# documents: make it with batch_fixed_cost.corpus); "take" is the copy embed_part no longer makes for a part with no
# bad row (5.3-6.8 ms in rounds after a first cold one).   python bench/results/2026-12-07-s53/batch_pieces.py
import time, numpy as np, pyarrow as pa, pyarrow.compute as pc
from streamret.batch.corpus import Corpus
from streamret.batch.parquet_job import cut_parts
from streamret.batch.arrow_table import _ids, _texts, _column
c = Corpus("/tmp/short.parquet")
for r in range(3):
    T = [time.perf_counter()]
    batches = list(c.batches()); T.append(time.perf_counter())
    part = next(cut_parts(iter(batches), 147456, 151 << 20)); T.append(time.perf_counter())
    bad = part.column("error").is_valid().to_numpy(zero_copy_only=False)
    good_rows = np.flatnonzero(~bad)
    good = part.take(good_rows).select(["id", "text"]); T.append(time.perf_counter())
    ids = _ids(good, "id"); T.append(time.perf_counter())
    texts = _texts(good, "text"); T.append(time.perf_counter())
    col = _column(good, "text", "text").cast(pa.large_binary())
    s = int(pc.sum(pc.binary_length(col)).as_py()); T.append(time.perf_counter())
    idl = ids.to_pylist(); T.append(time.perf_counter())
    print(" ".join(f"{n} {1e3*(b-a):.1f}" for n, a, b in zip(["read", "cut", "take", "ids", "texts", "len", "idlist"], T, T[1:])), type(texts))
