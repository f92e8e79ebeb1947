"""Session 52 (workplace VM): a batch part's text check, row by row (as at 9fcb3f3: each row decoded) against this
tree's `arrow_table._texts` (whole-chunk Arrow work, only flagged rows decoded), on e2e-like tables of the manual
pages: 32 long documents (24.6 MB) and 8,000 short ones (28.8 MB). Three rounds each way, alternated; the first
call of each table reads a fresh table, as a job's part does.

    python bench/results/2026-12-07-s52/texts_check.py
"""
import gzip
import sys
import time
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from streamret.batch.arrow_table import _texts  # noqa: E402
from streamret.textcheck import InvalidText, check_bytes  # noqa: E402


def row_by_row(table: pa.Table, column: str) -> list:
    out = []
    for value in table.column(column).cast(pa.large_binary()).to_pylist():
        if value is None:
            out.append("text is null")
            continue
        try:
            check_bytes(value, "text")
        except InvalidText as e:
            out.append(str(e))
            continue
        out.append(value)
    return out


raw = gzip.open(ROOT / ".device/text/man.txt.gz").read()
for kind, n, size in (("long", 32, 770_000), ("short", 8000, 3600)):
    docs = [raw[(i * size) % (len(raw) - size):][:size].decode("utf-8", "ignore") for i in range(n)]
    table = pa.table({"text": pa.array(docs, pa.large_string())})
    assert _texts(table, "text") == row_by_row(table, "text")
    for fn in (row_by_row, _texts) * 3:
        t0 = time.perf_counter()
        fn(table, "text")
        print(f"{kind:5s} {fn.__name__:10s} {1e3 * (time.perf_counter() - t0):.1f} ms")
