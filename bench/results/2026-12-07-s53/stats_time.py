# Session 53 (workplace VM): what one stats() of engine processes costs, after a job filled their recent items.
#   python bench/results/2026-12-07-s53/stats_time.py MODEL PROCS DOCS   (read: random:small 9 3000 -> 4.0-5.4 ms)
import sys, time, numpy as np
from streamret.engine import EngineConfig
from streamret.engine.shards import start_engine
from streamret.batch.parquet_job import engine_counters
if __name__ == "__main__":
    eng = start_engine(sys.argv[1], "cpu", None, EngineConfig(), None, procs=int(sys.argv[2]))
    try:
        from streamret.batch.arrow_table import embed_table
        import pyarrow as pa, gzip
        text = gzip.open(".device/text/man.txt.gz", "rt", errors="replace").read()
        docs = [text[i*300:(i+1)*300] for i in range(int(sys.argv[3]))]
        t0 = time.perf_counter()
        embed_table(eng, pa.table({"id": [str(i) for i in range(int(sys.argv[3]))], "text": docs}))
        print("job", time.perf_counter() - t0)
        for f in (eng.stats, lambda: engine_counters(eng)):
            ts = []
            for _ in range(10):
                t0 = time.perf_counter(); f(); ts.append(1e3 * (time.perf_counter() - t0))
            print(f"{np.min(ts):.2f} {np.median(ts):.2f} ms")
        s = eng.stats(); print(len(s.get("recent_items", [])), sorted(s)[:50])
    finally:
        eng.shutdown(checkpoint=False)
