# Session 39, workplace VM: pq.read_table against the job's Corpus.batches on the same file (python read_cmp.py FILE).
import time, sys, glob
import pyarrow.parquet as pq, pyarrow.dataset as ds, pyarrow as pa
from streamret.batch.corpus import Corpus
path = sys.argv[1]
md = pq.ParquetFile(path).metadata
print("row groups", md.num_row_groups, "compression", md.row_group(0).column(1).compression, "size", md.row_group(0).column(1).total_compressed_size/1e6, "->", md.row_group(0).column(1).total_uncompressed_size/1e6)
for rep in range(4):
    t0 = time.perf_counter(); t = pq.read_table(path); t1 = time.perf_counter()
    c = Corpus(path); b = list(c.batches()); t2 = time.perf_counter()
    t3 = time.perf_counter(); t = pq.read_table(path, use_threads=False); t4 = time.perf_counter()
    print(f"read_table {1e3*(t1-t0):.1f} ms, Corpus.batches {1e3*(t2-t1):.1f} ms, read_table no threads {1e3*(t4-t3):.1f}")
