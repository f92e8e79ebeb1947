"""Host work per engine step, on the CPU: where the step loop's own time goes (not the model's).

    python bench/engine_host.py --streams 256 --chunk 64 --rounds 12

N streams each append one chunk of C tokens per round (byte tokenizer, ASCII text: one token per
byte; sentence segments), as bench/engine.py does. The step-loop thread runs under cProfile; the
printed table gives, per step, the time in each part of the loop: scheduling, gathering and
scattering states, packing the tokens and spans, the model call, booking segments and items, and
acks. The model's share is what the runner spends in the RetNet forward; everything else is host
work that a GPU step would have to hide.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import sys
import time
from concurrent.futures import wait

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
from bench.engine import text_chunks  # noqa: E402
from streamret.engine import Engine, EngineConfig  # noqa: E402
from streamret.model.spec import load_model  # noqa: E402

# (label, file suffix, function name): cumulative time of these functions in the step thread
PARTS = [
    ("schedule", "scheduler.py", "schedule"),
    ("spans (plan -> text pieces)", "scheduler.py", "spans"),
    ("gather states", "state_store.py", "gather"),
    ("pack tokens (StreamWork.tokens)", "scheduler.py", "tokens"),
    ("model call (runner.run)", "worker.py", "run"),
    ("  of which the RetNet forward", "module.py", "_call_impl"),
    ("scatter states", "state_store.py", "scatter"),
    ("book the step (_apply)", "engine.py", "_apply"),
    ("  of which segments.add", "segments.py", "add"),
    ("  of which _keep_segments", "engine.py", "_keep_segments"),
    ("send acks (_resolve)", "engine.py", "_resolve"),
]


class ProfiledEngine(Engine):
    """The engine with its step-loop thread under cProfile."""

    profile: cProfile.Profile

    def _loop(self) -> None:
        self.profile = cProfile.Profile()
        self.profile.enable()
        try:
            super()._loop()
        finally:
            self.profile.disable()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="random:tiny")
    p.add_argument("--streams", default=256, type=int)
    p.add_argument("--chunk", default=64, type=int, help="tokens (bytes) per chunk")
    p.add_argument("--rounds", default=12, type=int)
    p.add_argument("--step-tokens", default=16384, type=int)
    p.add_argument("--threads", default=1, type=int, help="torch CPU threads")
    p.add_argument("--top", default=0, type=int, help="also print the top functions by own time")
    p.add_argument("--no-profile", action="store_true", help="the engine's own counters only, without cProfile")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_model(args.model, "cpu")
    n, c = args.streams, args.chunk
    cfg = EngineConfig(
        max_step_tokens=args.step_tokens, max_chunk_bytes=max(c, 1 << 20), max_pending_chunks_per_stream=4,
        max_pending_chunks=4 * n + 16, max_pending_bytes=4 * n * c + (1 << 20),
        device_state_bytes=(n + 1) * loaded.model.config.state_bytes_per_stream(), durable_every_chunks=0,
    )
    chunks = text_chunks(min(n, 64), c, seed=c)
    ids = [f"bench/{i}" for i in range(n)]
    with (Engine if args.no_profile else ProfiledEngine)(loaded, None, cfg) as eng:
        def one_round(seq: int) -> None:
            futures = [eng.submit_append(sid, seq, chunks[(i + seq) % len(chunks)]) for i, sid in enumerate(ids)]
            for f in wait(futures)[0]:
                f.result()

        one_round(1)
        before = eng.stats()
        t0 = time.perf_counter()
        for r in range(args.rounds):
            one_round(2 + r)
        dt = time.perf_counter() - t0
        after = eng.stats()
    steps = after["steps"] - before["steps"]
    tokens = after["tokens_processed"] - before["tokens_processed"]
    all_steps = after["steps"]
    print(f"{platform.processor() or 'cpu'}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}; "
          f"{args.model}, {n} streams x {c}-token chunks, {args.rounds} rounds: {tokens:,} tokens in {steps} steps "
          f"({tokens / max(1, steps):.0f} tokens and {n * args.rounds / max(1, steps):.0f} streams per step), "
          f"{tokens / dt:,.0f} tok/s")
    host_ms = 1e3 * (after["loop_host_seconds"] - before["loop_host_seconds"]) / steps
    model_ms = 1e3 * (after["loop_model_seconds"] - before["loop_model_seconds"]) / steps
    print(f"engine counters per step: host {host_ms:.2f} ms, model runner {model_ms:.2f} ms")
    if args.no_profile:
        return
    stats = pstats.Stats(eng.profile)
    print(f"cProfile of the step thread, all {all_steps} steps (warm-up included), ms per step (profiler overhead "
          "included):")
    cum: dict[str, float] = {}
    for (file, _, name), (_, _, _, ct, _) in stats.stats.items():  # type: ignore[attr-defined]
        for label, suffix, fn in PARTS:
            if name == fn and file.endswith(suffix):
                cum[label] = cum.get(label, 0.0) + ct
    total = sum(ct for (_, _, name), (_, _, _, ct, _) in stats.stats.items()  # type: ignore[attr-defined]
                if name in ("_next_step", "_launch", "_finish"))
    for label, _, _ in PARTS:
        print(f"  {label:36s} {1e3 * cum.get(label, 0.0) / all_steps:8.2f}")
    print(f"  {'step loop total (next, launch, finish)':36s} {1e3 * total / all_steps:8.2f}")
    if args.top:
        ours = "streamret/engine|numpy|dataclass|threading|concurrent|<string>"
        stats.sort_stats("tottime").print_stats(ours, args.top)


if __name__ == "__main__":
    main()
