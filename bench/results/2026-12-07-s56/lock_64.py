"""Session 56 (workplace VM): the engine lock's takers at one engine's share of 64 streams: STREAMS streams keep 4 chunks of
2 KB in flight (bench/service.py's run_engine) through the real Engine with tokenizer processes, the model slept 2 ms
plus 0.1 us a token; STREAMRET_LOCK_PROFILE=1 books each call site's takes, waits and holds.

    python3 bench/results/2026-12-07-s56/lock_64.py 7 150
"""
import argparse, os, sys
from pathlib import Path
os.environ["STREAMRET_LOCK_PROFILE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "bench"))
import service
from engine_host import sleep_for_the_model
from streamret.engine import Engine, EngineConfig
from streamret.model.spec import load_model
streams, chunks = int(sys.argv[1]), int(sys.argv[2])
args = argparse.Namespace(streams=streams, chunks=chunks, chunk_bytes=2048, window=4, stamps=True)
service.use_text(str(ROOT / ".device/text/man.txt.gz"))
cfg = EngineConfig(durable_every_chunks=0, tokenize_procs=True, max_step_tokens=32768)
with Engine(load_model("default", "cpu", None), None, cfg) as engine:
    sleep_for_the_model(engine, ms=2.0, us_per_token=0.1)
    before = engine.stats()
    row = service.run_engine(engine, args, "x")
    after = engine.stats()
steps = after["steps"] - before["steps"]
print(f"{row['tokens_per_s']/1e3:.0f} k tok/s, {row['tokens']} tokens in {row['seconds']:.2f} s, {steps} steps, {row['tokens']/steps:.0f} tokens a step")
sites = after["lock_sites"]
for site, v in sorted(sites.items(), key=lambda kv: -kv[1].get("held_s", 0))[:12]:
    print(site, {k: (round(x, 4) if isinstance(x, float) else x) for k, x in v.items()})
