"""Session 49 (workplace VM): the step loop's CPU a step by part (EngineCore's part clock) in the real engine with
the manual pages' text, tokenizer processes, and the model replaced by bench/engine_host.py's HostOnlyRunner behind
a sleep of 1 ms plus 0.1 us a token; STREAMS streams keep 4 chunks of 2 KB in flight (bench/service.py's
run_engine). "launch" is the stand-in's, not a GPU's; gather and scatter are host copies here.

    python bench/results/2026-12-07-s49/step_host_parts.py 5 200
"""
import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ["TOKENIZERS_PARALLELISM"] = "false"
import service  # noqa: E402  (bench/service.py)
from engine_host import sleep_for_the_model  # noqa: E402

from streamret.engine import Engine, EngineConfig  # noqa: E402
from streamret.model.spec import load_model  # noqa: E402

streams, chunks = int(sys.argv[1]), int(sys.argv[2])
args = argparse.Namespace(streams=streams, chunks=chunks, chunk_bytes=2048, window=4)
service.use_text(str(ROOT / ".device/text/man.txt.gz"))
cfg = EngineConfig(durable_every_chunks=0, tokenize_procs=True, max_step_tokens=32768)
with Engine(load_model("default", "cpu", None), None, cfg) as engine:
    sleep_for_the_model(engine)
    before = engine.stats()
    row = service.run_engine(engine, args, "x")
    after = engine.stats()
steps = after["steps"] - before["steps"]
cpu = {k: 1e3 * (v - before["loop_parts_cpu_seconds"][k]) / steps for k, v in after["loop_parts_cpu_seconds"].items()}
print(f"{streams} streams: {row['tokens_per_s'] / 1e3:.1f} k tokens/s, {steps} steps of {row['tokens'] / steps:.0f} "
      f"tokens; the step thread's CPU ms a step: " + ", ".join(f"{k} {v:.3f}" for k, v in cpu.items()))
print(f"  besides idle and launch: {sum(v for k, v in cpu.items() if k not in ('idle', 'launch')):.2f} ms a step")
