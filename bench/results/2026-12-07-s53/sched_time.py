# Session 53: Scheduler.schedule timed, this tree against a copy of the tree before the pick loops became one
# (git show <rev>:streamret/engine/scheduler.py > /tmp/old_scheduler.py, its relative imports made absolute).
import sys, time, importlib.util
sys.path.insert(0, "/work/main/tests")
import numpy as np
from test_scheduler import item
import streamret.engine.scheduler as new
spec = importlib.util.spec_from_file_location("old_scheduler", "/tmp/old_scheduler.py"); old = importlib.util.module_from_spec(spec); sys.modules["old_scheduler"] = old; spec.loader.exec_module(old)
def run(mod, groups, whole, rounds=30):
    best = 1e9
    for _ in range(5):
        s = mod.Scheduler(max_step_tokens=32768, max_step_streams=256, max_pending_chunks_per_stream=8,
                          max_pending_bytes_per_stream=1 << 20, max_pending_chunks=1 << 20, max_pending_bytes=1 << 40,
                          whole_chunk_tokens=whole)
        for i in range(1024):
            for q in range(2):
                s.add(item(f"s{i}", 480, seq=q + 1, group=f"g{i % groups}"))
        t = 0.0
        for _ in range(rounds):
            t0 = time.perf_counter(); plan = s.schedule(exclude=set()); t += time.perf_counter() - t0
            for w in plan.work:
                for sl in w.slices:
                    if sl.completes:
                        s.complete(sl.item)
            if not s.has_work(): break
        best = min(best, t)
    return 1e6 * best / rounds, len(plan.work)
for groups in (1, 4):
    for whole in (None, 512):
        for name, mod in (("old", old), ("new", new), ("old", old), ("new", new)):
            us, n = run(mod, groups, whole)
            print(groups, whole, name, f"{us:.0f} us a schedule", n)
