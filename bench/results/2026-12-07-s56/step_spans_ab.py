"""Session 56 (workplace VM): the real engine (model slept, bench/engine_host.py) runs STREAMS streams of CHUNKS 2 KB chunks, its step plans are kept, then step_spans of the tree before (OLD, a copy of scheduler.py at git HEAD written by the command below) and of this tree are checked equal and timed on them.

    git show HEAD:streamret/engine/scheduler.py > /tmp/s56/old_scheduler.py
    git apply bench/results/2026-12-07-s56/step_spans_joined.patch   # the variant, then:
    python3 bench/results/2026-12-07-s56/step_spans_ab.py 114 24

Last, a cProfile of the variant over five passes.
"""
import argparse, os, sys, time
from pathlib import Path
ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "bench"))
os.environ["TOKENIZERS_PARALLELISM"] = "false"
import service
from engine_host import sleep_for_the_model
from streamret.engine import Engine, EngineConfig
from streamret.engine import scheduler
from streamret.model.spec import load_model
plans = []
orig = scheduler.StepPlan.step_spans
def spans(self):
    works = [w for w in self.work if w.n_tokens]
    plans.append([scheduler.StreamWork(w.stream_id, list(w.slices), w.n_tokens) for w in works])
    return orig(self)
scheduler.StepPlan.step_spans = spans
streams, chunks = int(sys.argv[1]), int(sys.argv[2])
args = argparse.Namespace(streams=streams, chunks=chunks, chunk_bytes=2048, window=4)
service.use_text(str(ROOT / ".device/text/man.txt.gz"))
cfg = EngineConfig(durable_every_chunks=0, tokenize_procs=True, max_step_tokens=32768)
with Engine(load_model("default", "cpu", None), None, cfg) as engine:
    sleep_for_the_model(engine)
    row = service.run_engine(engine, args, "x")
print(len(plans), "plans; slices a step", sum(len(s.slices) for p in plans for s in p) / len(plans),
      "streams a step", sum(map(len, plans)) / len(plans))
import importlib.util
spec = importlib.util.spec_from_file_location("streamret.engine._old_scheduler", "/tmp/s56/old_scheduler.py")
old = importlib.util.module_from_spec(spec); sys.modules[spec.name] = old; spec.loader.exec_module(old)
import numpy as np
for p in plans:  # the same arrays and text
    x, y = old.step_spans(p), scheduler.step_spans(p)
    for f in ("lens", "per_stream", "cut_before", "cut_after", "last", "facts"):
        np.testing.assert_array_equal(getattr(x, f), getattr(y, f))
    assert x.text == y.text
for rep in range(5):
    for name, fn in (("old", old.step_spans), ("new", scheduler.step_spans)):
        t0 = time.perf_counter()
        for p in plans:
            fn(p)
        print(f"{name} step_spans: {1e3 * (time.perf_counter() - t0) / len(plans):.3f} ms a step")
import cProfile, pstats
pr = cProfile.Profile(); pr.enable()
for _ in range(5):
    for p in plans: scheduler.step_spans(p)
pr.disable(); pstats.Stats(pr).sort_stats("tottime").print_stats(14)
