"""The scheduler alone under each `EngineConfig.step_fill`: how full its steps are and how much of what the device
runs is padding (CUDA graphs pad a step to its token bucket: streamret/model/graphs.py). A model of the engine's
queue, not a measurement of it: N streams each keep up to --window chunks queued (about 533 tokens each, 2 KB of
the manual pages' text at 0.26 tokens a byte), a chunk's stream sends its next one with probability 1/2 a step once
it is completed (tokenizing and acks take no time here), and each step passes over the streams of the step before
it (the GPU's overlapped steps).

    python bench/step_fill.py --streams 114 --steps 400        # 1,024 streams over 9 engines: 114 an engine
    python bench/step_fill.py --streams 7 --token-step 1024     # 64 streams, finer graph buckets
    python bench/step_fill.py --split-after                      # chunks of an engine that keeps no records

Prints tokens a step, the padded size and padding's share of it, for each step_fill. --split-after makes every
chunk `WorkItem.split_after` (an engine without a durable store: a share goes on into the stream's next chunk).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from streamret.engine.config import STEP_FILLS  # noqa: E402
from streamret.engine.scheduler import Scheduler, WorkItem, fill_target  # noqa: E402
from streamret.engine.text import TextPiece, TextSnapshot  # noqa: E402
from streamret.model.graphs import TOKEN_STEP, token_bucket  # noqa: E402


def chunk(sid: str, seq: int, n: int, split_after: bool = False) -> WorkItem:
    """A tokenized chunk of n tokens in one piece (what the scheduler reads of it)."""
    return WorkItem(sid, seq, np.zeros(n, np.int64), [TextPiece("x", 0, 1)], np.array([n], np.int64),
                    TextSnapshot(b"", 0), 4 * n, split_after=split_after)


def simulate(fill: str, streams: int, window: int, steps: int, budget: int, seed: int,
             token_step: int = TOKEN_STEP, split_after: bool = False) -> dict:
    """fill: EngineConfig.step_fill ("off", "padding", "budget"); token_step: EngineConfig.graph_token_step;
    split_after: WorkItem.split_after of every chunk."""
    rng = np.random.default_rng(seed)
    s = Scheduler(budget, 256, 64, 1 << 30, 1 << 30, 1 << 40, fill_to=fill_target(fill, budget, token_step))
    sent = dict.fromkeys(range(streams), 0)
    open_ = dict.fromkeys(range(streams), 0)

    def send(i: int) -> None:
        sent[i] += 1
        open_[i] += 1
        s.add(chunk(f"s{i}", sent[i], max(1, int(rng.normal(533, 60))), split_after))

    for i in range(streams):
        for _ in range(int(rng.integers(1, window + 1))):
            send(i)
    tokens, padded, running = [], [], set()
    for _ in range(steps):
        plan = s.schedule(exclude=running)
        tokens.append(plan.n_tokens)
        padded.append(token_bucket(plan.n_tokens, token_step) if plan.n_tokens else 0)
        for w in plan.work:
            for sl in w.slices:
                if sl.completes:
                    s.complete(sl.item)
                    open_[int(w.stream_id[1:])] -= 1
        running = {w.stream_id for w in plan.work}
        for i in range(streams):
            while open_[i] < window and rng.random() < 0.5:
                send(i)
    t, p = np.array(tokens[steps // 8:]), np.array(padded[steps // 8:])  # past the start
    return {"tokens_per_step": float(t.mean()), "padded_per_step": float(p.mean()),
            "padding_share": float(1 - t.sum() / max(p.sum(), 1))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=114)
    ap.add_argument("--window", type=int, default=4)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--budget", type=int, default=32768, help="max_step_tokens (the GPU's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split-after", action="store_true", help="every chunk WorkItem.split_after")
    ap.add_argument("--token-step", type=int, default=TOKEN_STEP,
                    help="EngineConfig.graph_token_step: the graphs' token buckets, powers of two up to it, then its "
                         "multiples")
    args = ap.parse_args(argv)
    for fill in STEP_FILLS:
        r = simulate(fill, args.streams, args.window, args.steps, args.budget, args.seed, args.token_step,
                     args.split_after)
        print(f"step_fill {fill:8s} tokens a step {r['tokens_per_step']:8.0f}  padded "
              f"{r['padded_per_step']:8.0f}  padding {r['padding_share']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
