import sys, time
import numpy as np
root = sys.argv[1]; s = int(sys.argv[2]); new = int(sys.argv[3])
sys.path.insert(0, root); sys.path.insert(0, root + '/bench')
from keep_segments import sentences
from streamret.engine.kept_pool import KeptPool
from streamret.engine.segments import SegmentTracker, keep_segments
rng = np.random.default_rng(0)
sents, d = sentences(), 384
def texts(n): return [sents[i] for i in rng.integers(0, len(sents), n)]
n = s * new
steps = [([i * new for i in range(s + 1)], texts(n), np.cumsum(rng.integers(10, 200, (n, 2)), axis=0) + 10**6 * (j + 1),
          rng.standard_normal((n, d)).astype(np.float32), rng.standard_normal((n, d)).astype(np.float32)) for j in range(30)]
best = 1e9
for rep in range(7):
    pool = KeptPool(64)
    trackers = [SegmentTracker(d_model=d, pool=pool) for _ in range(s)]
    for t in trackers:
        t.keep_many(texts(64), np.cumsum(rng.integers(10, 200, (64, 2)), axis=0),
                    rng.standard_normal((64, d)).astype(np.float32), rng.standard_normal(d).astype(np.float32))
    for st in steps[:5]:
        keep_segments(trackers, *st)
    t0 = time.process_time()
    for st in steps[5:]:
        keep_segments(trackers, *st)
    best = min(best, (time.process_time() - t0) / (len(steps) - 5))
print(f"{root}: {best*1e3:.3f} ms CPU a step ({s} x {new})")
