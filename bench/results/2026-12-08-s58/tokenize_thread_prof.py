"""Session 58 (workplace VM): cProfile (wall time) of an engine's tokenize threads, STREAMS streams with 4 chunks of
2 KB of the manual pages in flight each (bench/service.py's run_engine), tokenizer processes, the model slept 2 ms
plus 0.1 us a token; the 25 functions of most own time.

    python3 bench/results/2026-12-08-s58/tokenize_thread_prof.py STREAMS CHUNKS
"""
import argparse, cProfile, os, pstats, sys, io
from pathlib import Path
os.environ["TOKENIZERS_PARALLELISM"] = "false"
ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "bench"))
import service
from engine_host import sleep_for_the_model
from streamret.engine import Engine, EngineConfig
from streamret.engine import tokenize_stage as TS
from streamret.model.spec import load_model
profs = []
orig = TS.TokenizeStage._run
def run(self):
    p = cProfile.Profile(); profs.append(p); p.enable()
    try: orig(self)
    finally: p.disable()
TS.TokenizeStage._run = run
streams, chunks = int(sys.argv[1]), int(sys.argv[2])
args = argparse.Namespace(streams=streams, chunks=chunks, chunk_bytes=2048, window=4, stamps=False)
service.use_text(str(ROOT / ".device/text/man.txt.gz"))
cfg = EngineConfig(durable_every_chunks=0, tokenize_procs=True, max_step_tokens=32768)
with Engine(load_model("default", "cpu", None), None, cfg) as engine:
    sleep_for_the_model(engine, ms=2.0, us_per_token=0.1)
    before = engine.stats()
    row = service.run_engine(engine, args, "x")
    after = engine.stats()
tokens = row["tokens"]
print(f"{row['tokens_per_s']/1e3:.0f} k tok/s, {tokens} tokens; calls {after['tokenize_calls']-before['tokenize_calls']}, items {after['tokenize_call_items']-before['tokenize_call_items']}")
st = pstats.Stats(profs[0])
for p in profs[1:]: st.add(p)
s = io.StringIO(); st.stream = s
st.sort_stats("tottime").print_stats(25)
print(s.getvalue()[:6000])
