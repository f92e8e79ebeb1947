"""keep_segments on the CPU: one step's closed segments kept by streams whose kept set is full (the engine's
`book_segments` at 1,024 streams on the H200, where most streams overflow).

    python bench/keep_segments.py --streams 47 --new 11 --steps 20 --repeats 5

Each of --streams trackers holds 64 kept segments (random embeddings of width 384, sentences of the manual
pages in .device/text/man.txt.gz, else this repository's Markdown); each step gives every stream --new
segments, each with its reference (the stream where it closed: random here). Prints the best of --repeats mean
ms a step. A stream that closes more than max_kept - keep_to + 1 (17) segments in a step is ranked in several
rounds (`keep_segments`).
"""

from __future__ import annotations

import argparse
import gzip
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.text_path import corpus  # noqa: E402
from streamret.engine.kept_pool import KeptPool  # noqa: E402
from streamret.engine.segments import SegmentTracker, keep_segments  # noqa: E402


def sentences() -> list[str]:
    man = ROOT / ".device" / "text" / "man.txt.gz"
    text = gzip.open(man).read()[:3_000_000] if man.exists() else corpus(3_000_000)
    return [s.strip()[:512] for s in re.split(r"(?<=[.!?])\s+", text.decode("utf-8", "replace")) if s.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=47)
    ap.add_argument("--new", type=int, default=11, help="segments a stream closes a step")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    sents, d, s = sentences(), 384, args.streams

    def texts(n: int) -> list[str]:
        return [sents[i] for i in rng.integers(0, len(sents), n)]

    def full_trackers() -> list[SegmentTracker]:
        pool = KeptPool(64)  # one per engine (StreamCodec.kept_pool)
        trackers = [SegmentTracker(d_model=d, pool=pool) for _ in range(s)]
        for t in trackers:
            t.keep_many(texts(64), np.cumsum(rng.integers(10, 200, (64, 2)), axis=0),
                        rng.standard_normal((64, d)).astype(np.float32), rng.standard_normal(d).astype(np.float32))
        return trackers

    n = s * args.new
    steps = [([i * args.new for i in range(s + 1)], texts(n), np.cumsum(rng.integers(10, 200, (n, 2)), axis=0) + 10**6,
              rng.standard_normal((n, d)).astype(np.float32), rng.standard_normal((n, d)).astype(np.float32))
             for _ in range(args.steps)]
    best = float("inf")
    for _ in range(args.repeats):
        trackers = full_trackers()
        t0 = time.perf_counter()
        for bounds, new_texts, byte_spans, embeddings, references in steps:
            keep_segments(trackers, bounds, new_texts, byte_spans, embeddings, references)
        best = min(best, (time.perf_counter() - t0) / len(steps))
    print(f"keep_segments: {best * 1e3:.3f} ms a step ({s} streams with 64 kept x {args.new} new segments)")


if __name__ == "__main__":
    main()
