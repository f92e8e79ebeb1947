# Session 39, workplace VM: check_bytes (one decode) against the piecewise check then a decode (before), over the
# texts of a Parquet file (python check_bytes_time.py FILE, e.g. the 25.6 MB corpus batch_start.py writes).
import sys
import time

import pyarrow.parquet as pq

from streamret.textcheck import Utf8Check, check_bytes

vals = pq.read_table(sys.argv[1]).column("text").cast("large_binary").to_pylist()


def before(data, name):
    c = Utf8Check(name)
    c.feed(data)
    c.finish()
    return data.decode("utf-8")


for rep in range(3):
    for fn in (before, check_bytes):
        t0 = time.perf_counter()
        for v in vals:
            fn(v, "x")
        print(fn.__name__, f"{1e3 * (time.perf_counter() - t0):.1f} ms for {sum(map(len, vals)) / 1e6:.1f} MB")
