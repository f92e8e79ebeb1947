"""Session 54, VM: the corpus read before (Corpus.batches: the dataset scanner, 64 rows a batch) and as landed
(ParquetFile.iter_batches, batches of 256 KiB / 1 MiB / 4 MiB of text by the file's mean row), on 32 books of 800,000
characters and 8,000 rows of 3,750; best and median of 5, first batch and all. Run from the tree before the change
(old64 is then its own Corpus.batches).

    python bench/results/2026-12-07-s54/read_batches.py
"""
import gzip, os, tempfile, time, sys
import pyarrow as pa, pyarrow.parquet as pq
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "2026-12-07-s53"))
from batch_fixed_cost import corpus
from streamret.batch.corpus import Corpus, normalize
text = gzip.open(str(__import__("pathlib").Path(__file__).resolve().parents[3] / ".device/text/man.txt.gz"), "rt", errors="replace").read()
def new_batches(c, target):
    for fragment in c.dataset.get_fragments():
        with c.dataset.filesystem.open_input_file(fragment.path) as f:
            pf = pq.ParquetFile(f)
            md = pf.metadata
            size = 0
            for i in range(md.num_row_groups):
                rg = md.row_group(i)
                for j in range(rg.num_columns):
                    if rg.column(j).path_in_schema == c.text_column:
                        size += rg.column(j).total_uncompressed_size
            rows = max(1, min(65536, int(target * md.num_rows / max(size, 1)))) if md.num_rows else 64
            for b in pf.iter_batches(batch_size=rows, columns=[c.id_column, c.text_column], use_threads=False):
                if b.num_rows:
                    yield normalize(pa.Table.from_batches([b]), c.id_column, c.text_column)
with tempfile.TemporaryDirectory() as tmp:
  for n, nch in ((32, 800000), (8000, 3750)):
    src = os.path.join(tmp, f"c{n}.parquet"); corpus(src, n, text, nch)
    c = Corpus(src)
    res = {}
    for r in range(5):
        for label, f in (("old64", lambda: c.batches()), ("new256K", lambda: new_batches(c, 256<<10)), ("new1M", lambda: new_batches(c, 1<<20)), ("new4M", lambda: new_batches(c, 4<<20))):
            t0 = time.perf_counter(); it = f(); first = next(it); t1 = time.perf_counter(); k = first.num_rows + sum(t.num_rows for t in it); t2 = time.perf_counter()
            res.setdefault(label, []).append((1e3*(t1-t0), 1e3*(t2-t0)))
    for label, v in res.items():
        print(n, label, "first best %.1f  all best %.1f med %.1f" % (min(a for a,_ in v), min(b for _,b in v), sorted(b for _,b in v)[2]))
