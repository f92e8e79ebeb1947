# Session 39, workplace VM: where the batch job's start goes before the first document is sent (run from the repo root,
# after .device/text/man.txt.gz exists): opening the corpus, reading the first part (the bench's 32 MiB: the whole
# 25.6 MB corpus of 32 long documents), take/select, the texts as Python bytes and checked, pickling 18 sub-batches.
import gzip, time, pickle, sys, tempfile, os
sys.path.insert(0, "bench")
import numpy as np, pyarrow as pa, pyarrow.compute as pc
from streamret.batch.corpus import Corpus
from streamret.batch.parquet_job import cut_parts, skip_written
from streamret.batch import arrow_table
from collections import Counter
import e2e
text = gzip.decompress(open(".device/text/man.txt.gz", "rb").read()).decode()
docs = [(text * 4)[i * 800_000 % len(text): i * 800_000 % len(text) + 800_000] for i in range(32)]
tmp = tempfile.mkdtemp()
path = f"{tmp}/long.parquet"
e2e.write_corpus(path, "long-", docs)
for rep in range(3):
    t0 = time.perf_counter()
    corpus = Corpus(path)
    t1 = time.perf_counter()
    part = next(cut_parts((t for t, n in skip_written(corpus.batches(), Counter())), 1 << 20, 32 << 20))
    t2 = time.perf_counter()
    bad = part.column("error").is_valid().to_numpy(zero_copy_only=False)
    good = part.take(np.flatnonzero(~bad)).select(["id", "text"])
    t3 = time.perf_counter()
    ids = arrow_table._ids(good, "id"); texts = arrow_table._texts(good, "text")
    data = [t for t in texts]
    t4 = time.perf_counter()
    blobs = [pickle.dumps(("embed_documents", (0, [i], [f"s{i}"], [data[i]], 65536)), protocol=5) for i in range(18)]
    t5 = time.perf_counter()
    print(f"rows {part.num_rows}: open corpus {1e3*(t1-t0):.1f} ms, first part read {1e3*(t2-t1):.1f}, take/select {1e3*(t3-t2):.1f}, "
          f"ids/texts {1e3*(t4-t3):.1f}, pickle 18 sub-batches {1e3*(t5-t4):.1f} ({sum(map(len, blobs))/1e6:.1f} MB)")
