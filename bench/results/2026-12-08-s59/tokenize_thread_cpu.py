"""Session 59 (workplace VM): what an engine's tokenize threads and its tokenizer processes spend a call and a token when
calls are small: STREAMS streams keep WINDOW chunks of 2 KB of the manual pages in flight (bench/service.py's
run_engine) through the real Engine with tokenizer processes, the model slept 2 ms plus 0.1 us a token; per thread
kind, CPU us a token and a tokenize call (EngineCore.stats' thread_cpu_seconds), and the calls' mean chunks. PASSES
(default 1) runs the load that many times over the same text on one engine and reads the last (text the engine read
before).

    python3 bench/results/2026-12-08-s59/tokenize_thread_cpu.py STREAMS CHUNKS WINDOW [PASSES]

Session 59 ran it alternately in a tree at 969e1b4 and in one at 5c0724f (with the small calls' dict):
`tokenize_thread_cpu_ab.txt` (8 300 1 2), `tokenize_thread_cpu_ab_pass4.txt` (8 150 1 4); `tokenize_thread_cpu.txt` is
8 100 1 at 5c0724f.
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

streams, chunks, window = (int(x) for x in sys.argv[1:4])
passes = int(sys.argv[4]) if len(sys.argv) > 4 else 1
args = argparse.Namespace(streams=streams, chunks=chunks, chunk_bytes=2048, window=window, stamps=False)
service.use_text(str(ROOT / ".device/text/man.txt.gz"))
cfg = EngineConfig(durable_every_chunks=0, tokenize_procs=True, max_step_tokens=32768)
with Engine(load_model("default", "cpu", None), None, cfg) as engine:
    sleep_for_the_model(engine, ms=2.0, us_per_token=0.1)
    service.run_engine(engine, argparse.Namespace(**{**vars(args), "chunks": 4}), "warm")  # streams, threads, pools
    for k in range(passes):
        before = engine.stats()
        row = service.run_engine(engine, args, f"pass{k}")
        after = engine.stats()
calls = after["tokenize_calls"] - before["tokenize_calls"]
items = after["tokenize_call_items"] - before["tokenize_call_items"]
tokens = row["tokens"]
print(f"{streams} streams, window {window}, pass {passes}: {row['tokens_per_s'] / 1e3:.0f} k tok/s; {calls} tokenize calls of "
      f"{items / max(1, calls):.2f} chunks")
cpu0, cpu1 = before["thread_cpu_seconds"], after["thread_cpu_seconds"]
for k in sorted(cpu1):
    d = cpu1[k] - cpu0.get(k, 0.0)
    print(f"  {k:16s} {1e6 * d / tokens:7.3f} us a token  {1e6 * d / max(1, calls):8.1f} us a tokenize call")
