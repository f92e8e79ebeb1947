"""Session 52 (workplace VM): the garbage collector's work in an engine process's step loop at a gen0 threshold:
bench/engine_host.py's engine (--no-model: a stand-in for the model) on the manual pages, 256 streams each appending
one 2 KB chunk a round, 8 rounds, after `gc_pauses.freeze_startup` (as an engine process), with the threshold set
after it. Prints the collections, their pauses and the step loop's CPU.

    python bench/results/2026-12-07-s52/gc_threshold.py 700,10,10
    python bench/results/2026-12-07-s52/gc_threshold.py 20000,10,10
"""
import argparse
import gc
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from bench import engine_host  # noqa: E402
from streamret import gc_pauses  # noqa: E402
from streamret.model.spec import load_model  # noqa: E402

threshold = tuple(int(x) for x in sys.argv[1].split(","))
gc_pauses.watch()
loaded = load_model("default", "cpu")
args = argparse.Namespace(streams=256, chunk=2048, rounds=8, step_tokens=32768, man_text=True, profile=False,
                          no_model=True, busy_threads=0, step_switch_interval=None, tokenize_procs=False)
gc_pauses.freeze_startup()
gc.set_threshold(*threshold)
p0 = gc_pauses.pauses()
r = engine_host.measure(loaded, args)
p1 = gc_pauses.pauses()
steps = r["after"]["steps"] - r["before"]["steps"]
print(f"gen0 threshold {threshold}: {p1['gc_collections'] - p0['gc_collections']} collections, "
      f"{1e3 * (p1['gc_pause_seconds'] - p0['gc_pause_seconds']):.1f} ms of pauses; step loop CPU "
      f"{1e3 * r['eng'].loop_cpu_s:.0f} ms over {steps} timed steps")
