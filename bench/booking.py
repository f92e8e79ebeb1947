"""Booking a step's segment sums on the host, in one process: one `SegmentTracker.add` per span against
one `add_step_spans` call for the whole step (the engine's steps now pool the runs between segment cuts
on the device and book only the text side: bench/engine_host.py times that).

    python bench/booking.py --streams 256 --chunk 64 --d-model 64

N streams each hold the pieces of one C-byte chunk of bench/engine.py's text (sentence segments), as
whole-piece spans; the same spans and random sums are booked both ways into fresh trackers, alternately,
and the best of --repeats thread-CPU times of each is printed (best of many, in one process: stable on a
shared machine, where whole-engine runs vary by 2x).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
from bench.engine import text_chunks  # noqa: E402
from streamret.engine.scheduler import Span  # noqa: E402
from streamret.engine.segments import SegmentTracker, add_step_spans  # noqa: E402
from streamret.engine.text import TextAssembler  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--streams", default=256, type=int)
    p.add_argument("--chunk", default=64, type=int, help="bytes of text per stream")
    p.add_argument("--d-model", default=64, type=int)
    p.add_argument("--repeats", default=30, type=int)
    args = p.parse_args()
    chunks = text_chunks(64, args.chunk, seed=args.chunk)
    spans = []
    for i in range(args.streams):
        text = TextAssembler()
        text.feed(chunks[i % 64])  # a segment is open when the booked chunk arrives
        pieces = text.feed(chunks[(i + 1) % 64])
        for piece in pieces:
            piece.lead_bytes  # noqa: B018  (the engine computes it when it tokenizes the chunk)
        spans.append([Span(piece, max(1, len(piece.text)), True, True) for piece in pieces])
    n_spans = sum(map(len, spans))
    sums = np.random.default_rng(0).standard_normal((n_spans, args.d_model))

    def per_span(trackers: list[SegmentTracker]) -> None:
        row = 0
        for tracker, stream_spans in zip(trackers, spans):
            for sp in stream_spans:
                tracker.add(sp.piece, sums[row], sp.n_tokens, sp.first, sp.last)
                row += 1

    def per_step(trackers: list[SegmentTracker]) -> None:
        add_step_spans(trackers, spans, sums)

    best = {"add per span": float("inf"), "add_step_spans": float("inf")}
    for _ in range(args.repeats):
        for name, book in (("add per span", per_span), ("add_step_spans", per_step)):
            trackers = [SegmentTracker(args.d_model) for _ in spans]
            t0 = time.thread_time()
            book(trackers)
            best[name] = min(best[name], time.thread_time() - t0)
    print(f"{args.streams} streams x {args.chunk} B, {n_spans} spans, d_model {args.d_model}, best of {args.repeats}: "
          + ", ".join(f"{name} {1e3 * s:.2f} ms" for name, s in best.items()))


if __name__ == "__main__":
    main()
