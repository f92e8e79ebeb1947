# Session 53 (workplace VM): the Parquet encoding of 8,000 rows of 384-dim float32 embeddings under writer options,
# best of 7 each (RESULTS, "Session 53": none moved it; a fixed-size binary column of as many bytes, all equal, for scale).
#   python bench/results/2026-12-07-s53/parquet_options.py
import io, time, numpy as np, pyarrow as pa, pyarrow.parquet as pq
from streamret.batch.parts import _write_options
n, d = 8000, 384
rng = np.random.default_rng(0)
emb = pa.FixedSizeListArray.from_arrays(pa.array(rng.standard_normal(n*d).astype(np.float32)), d)
t = pa.table({"embedding": emb})
def w(tab, **kw):
    best = 1e9
    for _ in range(7):
        b = io.BytesIO(); t0 = time.perf_counter(); pq.write_table(tab, b, **kw); best = min(best, time.perf_counter() - t0)
    return f"{1e3*best:.1f} ms {b.tell()/2**20:.1f} MiB"
o = _write_options(t.schema)
print("current", w(t, **o))
print("v2 pages", w(t, **o, data_page_version="2.0"))
print("no compression", w(t, **o, compression="none"))
print("bss", w(t, use_dictionary=False, write_statistics=False, use_byte_stream_split=["embedding.list.element"], compression="none"))
print("big pages", w(t, **o, data_page_size=8 << 20))
m = pa.array(np.zeros(n, bool))
emb2 = pa.FixedSizeListArray.from_arrays(pa.array(rng.standard_normal(n*d).astype(np.float32)), d, mask=pa.array(np.zeros(n, bool)))
print("with mask", w(pa.table({"embedding": emb2}), **o))
print("list<float>", w(pa.table({"embedding": emb.cast(pa.list_(pa.float32()))}), **o))
print("binary", w(pa.table({"embedding": pa.array([b"x"*1536]*n, pa.binary(1536))}), use_dictionary=False, write_statistics=False))
for wbs in (1024, 8192, 65536, 1 << 20):
    print("write_batch_size", wbs, w(t, **o, write_batch_size=wbs))
# a whole output part by column (the summaries as embed_table makes them: 5 sentences a row)
summ = pa.array([[("word " * 30)[j:j + 150] + str(i) for j in range(5)] for i in range(n)], pa.list_(pa.string()))
part = pa.table({"id": [f"s{i}" for i in range(n)], "embedding": emb, "tokens": pa.array(np.full(n, 929)),
                 "summary": summ, "error": pa.nulls(n, pa.string())})
print("whole part", w(part, **_write_options(part.schema)))
for c in part.column_names:
    one = part.select([c])
    print("  column", c, w(one, **_write_options(one.schema)))
