# Session 40, workplace VM: the local job's memory and time for one part before it is sent (read and cut as
# cut_parts does, take, ids and texts checked as embed_part / embed_table do). Usage: python part_memory.py MB MODE
# (MODE "combined": the tree's cut_parts; "chunked": without its combine_chunks, a variant measured and left).
import sys, tempfile, time, subprocess, os
import numpy as np, pyarrow as pa, pyarrow.parquet as pq
from collections import Counter
from streamret.batch.corpus import Corpus
from streamret.batch import parquet_job
from streamret.batch.parquet_job import skip_written
from streamret.batch import arrow_table
def cur():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
mb = int(sys.argv[1]); mode = sys.argv[2]
if mode == "chunked":
    import inspect
    src = inspect.getsource(parquet_job.cut_parts).replace(".combine_chunks()", "")
    exec(src, parquet_job.__dict__)
n = mb * (1 << 20) // 3700
path = f"/tmp/pm_{mb}.parquet"
if not os.path.exists(path):
    subprocess.run([sys.executable, "-c", f"import pyarrow as pa, pyarrow.parquet as pq; doc = open('README.md').read()*4; doc = doc[:3700]; pq.write_table(pa.table({{'id': [f'd{{i}}' for i in range({n})], 'text': [doc] * {n}}}), '{path}', row_group_size=65536)"], check=True)
r0 = cur(); t0 = time.perf_counter()
part = next(parquet_job.cut_parts((t for t, _ in skip_written(Corpus(path).batches(), Counter())), 1 << 30, mb << 20))
r1 = cur(); t1 = time.perf_counter()
bad = part.column("error").is_valid().to_numpy(zero_copy_only=False)
good = part.take(np.flatnonzero(~bad)).select(["id", "text"])
ids = arrow_table._ids(good, "id")
texts = arrow_table._texts(good, "text")
r3 = cur(); t3 = time.perf_counter()
print(f"{mode}: chunks {part.column('text').num_chunks} rss MB +part {r1-r0:.0f} +rest {r3-r1:.0f}; ms read+cut {1e3*(t1-t0):.0f} rest {1e3*(t3-t1):.0f}")
