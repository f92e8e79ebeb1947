"""Session 54, VM: the local batch job's own work to the hand-over for N long documents of C characters (session
53's batch_fixed_cost.py stand-in engine, which answers at once), five rounds after a first (cold) one; a sixth
under cProfile unless a third argument is given. Run with run_tree.py to compare two trees.

    python bench/results/2026-12-07-s54/long_handover.py 32 800000 noprof
"""
import gzip, os, tempfile, time, sys, cProfile, pstats
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "2026-12-07-s53"))
from batch_fixed_cost import corpus, StandIn
from streamret.batch.parquet_job import embed_parquet
text = gzip.open(str(__import__("pathlib").Path(__file__).resolve().parents[3] / ".device/text/man.txt.gz"), "rt", errors="replace").read()
n, nch = int(sys.argv[1]), int(sys.argv[2])
with tempfile.TemporaryDirectory() as tmp:
    src = os.path.join(tmp, "c.parquet"); corpus(src, n, text, nch)
    rows=[]
    for r in range(6):
        eng = StandIn(); out = os.path.join(tmp, f"o{r}")
        if r == 5 and len(sys.argv) < 4:
            prof = cProfile.Profile(); prof.enable()
        t0 = time.monotonic(); embed_parquet(src, out, engine=eng, progress=False); t1 = time.monotonic()
        if r == 5 and len(sys.argv) < 4:
            prof.disable(); pstats.Stats(prof).sort_stats("tottime").print_stats(18)
        rows.append((1e3*(eng.handed[0]-t0), 1e3*(t1-eng.returned[-1]), 1e3*(t1-t0), len(eng.handed)))
    for r in rows: print("to hand-over %.1f  after %.1f  whole %.1f  handovers %d" % r)
