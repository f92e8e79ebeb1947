"""Session 32 (workplace VM, no GPU): the real engine in a closed loop on the CPU, its model replaced by a stand-in
that sleeps a GPU step's time (no GIL held) and returns host-made outputs (bench/engine_host.py's HostOnlyRunner),
to see whether EngineConfig.draining_step_chunks shortens the round trip as bench/tokenize_join_loop.py says: real
text (the manual pages), the shipped tokenizer in tokenizer processes (as on a GPU), the real scheduler, tokenize
stage, step loop and acks; bench/service.py's run_engine keeps --window chunks in flight a stream.

    python bench/results/2026-12-05-cpu-s32/engine_loop.py --streams 6 --configs none,2,none,2
"""
import argparse
import json
import os
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import service  # noqa: E402  (bench/service.py)
from engine_host import HostOnlyRunner  # noqa: E402

from streamret.engine import Engine, EngineConfig  # noqa: E402
from streamret.model.spec import load_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streams", type=int, default=6)
    ap.add_argument("--chunks", type=int, default=150)
    ap.add_argument("--chunk-bytes", type=int, default=2048)
    ap.add_argument("--window", type=int, default=4)
    ap.add_argument("--device-ms", type=float, default=1.0, help="a step's device time: this ...")
    ap.add_argument("--device-us-per-token", type=float, default=0.4, help="... plus this a token (slept)")
    ap.add_argument("--configs", default="none,2,none,2", help="draining_step_chunks per run (none: off)")
    ap.add_argument("--text", default=os.path.join(ROOT, ".device", "text", "man.txt.gz"))
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    service.use_text(args.text)
    loaded = load_model("default", "cpu", None)
    rows = []
    for name in args.configs.split(","):
        chunks = None if name == "none" else int(name)
        cfg = EngineConfig(durable_every_chunks=0, tokenize_procs=True, draining_step_chunks=chunks,
                           max_step_tokens=32768)
        with Engine(loaded, None, cfg) as engine:
            fake = HostOnlyRunner(engine.model)

            def run(tokens, lens, state, runs, fake=fake):
                time.sleep((args.device_ms + args.device_us_per_token * len(tokens) / 1e3) * 1e-3)
                return fake(tokens, lens, state, runs)

            engine.runner.run = run
            before = engine.stats()
            row = service.run_engine(engine, args, f"c{name}")
            after = engine.stats()
            steps = after["steps"] - before["steps"]
            row.update(draining_step_chunks=chunks, steps=steps, tokens_per_step=round(row["tokens"] / max(1, steps)),
                       streams_per_step=round((after["step_streams"] - before["step_streams"]) / max(1, steps), 2))
        rows.append(row)
        print(f"draining_step_chunks {name:>4}: {row['tokens_per_s'] / 1e3:8.1f} k tok/s, {steps} steps of "
              f"{row['tokens_per_step']} tokens, {row['streams_per_step']} streams a step", flush=True)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "engine_loop.json"), "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
