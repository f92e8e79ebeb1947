"""Session 58 (workplace VM, 2 cores): a chunk's round trip by leg at one engine's share of 64 streams, with the
tokenize stage's two new stamps (engine_cutting, engine_cut): STREAMS streams keep 4 chunks of 2 KB of the manual
pages in flight (bench/service.py's run_engine) through the real Engine with tokenizer processes, the model slept
2 ms plus 0.1 us a token (a GPU step's device time); THREADS tokenize threads (EngineConfig.tokenizer_threads).

    python3 bench/results/2026-12-08-s58/legs_64.py STREAMS CHUNKS THREADS
"""
import argparse
import os
import sys
from pathlib import Path

os.environ["TOKENIZERS_PARALLELISM"] = "false"
ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import service  # noqa: E402
from engine_host import sleep_for_the_model  # noqa: E402

from streamret.engine import Engine, EngineConfig  # noqa: E402
from streamret.model.spec import load_model  # noqa: E402
from streamret.service.ack_legs import engine_stages, format_legs, summarize_legs  # noqa: E402

streams, chunks, threads = (int(x) for x in sys.argv[1:4])
args = argparse.Namespace(streams=streams, chunks=chunks, chunk_bytes=2048, window=4, stamps=True)
service.use_text(str(ROOT / ".device/text/man.txt.gz"))
cfg = EngineConfig(durable_every_chunks=0, tokenize_procs=True, max_step_tokens=32768, tokenizer_threads=threads)
with Engine(load_model("default", "cpu", None), None, cfg) as engine:
    sleep_for_the_model(engine, ms=2.0, us_per_token=0.1)
    before = engine.stats()
    row = service.run_engine(engine, args, "x")
    after = engine.stats()
steps = after["steps"] - before["steps"]
calls = after["tokenize_calls"] - before["tokenize_calls"]
items = after["tokenize_call_items"] - before["tokenize_call_items"]
print(f"{threads} tokenize threads, {streams} streams: {row['tokens_per_s'] / 1e3:.0f} k tok/s, {steps} steps of "
      f"{row['tokens'] / steps:.0f} tokens, {(after['step_streams'] - before['step_streams']) / steps:.2f} streams; "
      f"{calls} tokenize calls of {items / max(1, calls):.2f} chunks")
start = max((t for t, *_ in before["recent_items"]), default=float("-inf"))
print(format_legs(summarize_legs(engine_stages([i for i in after["recent_items"] if i[0] > start]))))
