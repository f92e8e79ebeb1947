"""Session 51 (workplace VM): how long the batch job's Parquet read takes on its own, for corpora like bench/e2e.py's
(32 documents of 770,000 bytes, 8,000 of 3,600 bytes of the manual pages, one file each): pq.read_table, the job's
Corpus.batches, and a fragment's to_batches on one thread and on several; three runs each, ms.

    python bench/results/2026-12-07-s51/parquet_read.py
"""
from pathlib import Path
import gzip, os, tempfile, time, sys
import pyarrow as pa, pyarrow.parquet as pq, pyarrow.dataset as ds
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from streamret.batch.corpus import Corpus
raw = gzip.open(str(Path(__file__).resolve().parents[3] / ".device/text/man.txt.gz")).read()
for kind, n, size in (("long", 32, 770_000), ("short", 8000, 3600)):
    docs = [raw[(i * size) % (len(raw) - size):][:size].decode("utf-8", "ignore") for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        p = os.path.join(tmp, "c.parquet")
        schema = pa.schema([("id", pa.string()), ("text", pa.large_string())])
        pq.write_table(pa.table({"id": [f"d{i}" for i in range(n)], "text": docs}, schema=schema), p)
        md = pq.ParquetFile(p).metadata
        print(kind, "row groups", md.num_row_groups, "size MB", os.path.getsize(p) / 1e6, md.row_group(0).column(1).compression)
        for rep in range(3):
            t0 = time.perf_counter(); t = pq.read_table(p); t1 = time.perf_counter()
            c = Corpus(p); t2 = time.perf_counter(); b = list(c.batches()); t3 = time.perf_counter()
            f = next(iter(ds.dataset(p).get_fragments()))
            t4 = time.perf_counter(); b2 = list(f.to_batches(columns=["id", "text"], batch_size=64, batch_readahead=1, use_threads=False)); t5 = time.perf_counter()
            b3 = list(f.to_batches(columns=["id", "text"], batch_size=64, use_threads=True)); t6 = time.perf_counter()
            print(f"  read_table {1e3*(t1-t0):.1f} ms; Corpus.batches {1e3*(t3-t2):.1f} ms ({len(b)}); to_batches st {1e3*(t5-t4):.1f}; mt {1e3*(t6-t5):.1f}")
