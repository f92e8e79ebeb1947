"""Session 52 (workplace VM): the step thread's `step_spans` (the schedule part's array work) replayed on the steps
of a real engine run: the engine (bench/engine_host.py, --no-model: a stand-in for the model) on the manual pages,
STREAMS streams each appending one 2 KB chunk a round; every step's StreamWork list is kept, then step_spans is
timed over all of them, REPEATS times, by thread CPU (the median pass printed), and each result checked equal to
the reference implementation kept here (the one before session 52's change).

    python bench/results/2026-12-07-s52/step_spans_replay.py 256 8
"""
import argparse
import statistics
import sys
import time
from bisect import bisect_left, bisect_right
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from bench import engine_host  # noqa: E402
from streamret.engine import scheduler  # noqa: E402
from streamret.engine.segments import StepSpans  # noqa: E402
from streamret.model.spec import load_model  # noqa: E402


def reference(works):  # step_spans as it was at 9fcb3f3
    starts, lens, cut_before, cut_after, facts, slices, per_work = [], [], [], [], [], [], []
    for w in works:
        per_work.append(len(w.slices))
        for sl in w.slices:
            layout, n_tokens = sl.item.layout, sl.item.n_tokens
            if sl.start == 0 and sl.end == n_tokens:
                lo, hi = 0, len(layout.starts)
            else:
                lo, hi = bisect_left(layout.ends, sl.start), bisect_right(layout.starts, sl.end)
            whole = layout.step_spans
            starts += layout.starts[lo:hi]
            lens.append(layout.lens[lo:hi])
            cut_before.append(whole.cut_before[lo:hi])
            cut_after.append(whole.cut_after[lo:hi])
            facts.append(whole.facts[lo:hi])
            slices.append((layout, lo, hi - lo, sl.start, sl.end, n_tokens))
    if not starts:
        return StepSpans.of([[] for _ in works])
    counts = np.array([n for _, _, n, _, _, _ in slices])
    start, end, total = (np.repeat(np.array([sl[k] for sl in slices], np.int64), counts) for k in (3, 4, 5))
    a = np.array(starts, np.int64)
    b = a + np.concatenate(lens)
    n = np.maximum(0, np.minimum(b, end) - np.maximum(a, start))
    first = (start <= a) & ((a < end) | ((a == b) & (a == end) & (end == total)))
    last = np.where(a < b, (start < b) & (b <= end), first)
    keep = np.flatnonzero((n > 0) | first | last)
    slice_of = np.repeat(np.arange(len(slices)), counts)
    booked = keep[last[keep]]
    bounds = np.searchsorted(slice_of[booked], np.arange(len(slices) + 1)).tolist()
    shifts = (np.array([lo for _, lo, _, _, _, _ in slices]) - (np.cumsum(counts) - counts)).tolist()
    booked_l, texts = booked.tolist(), []
    for (layout, _, _, _, _, _), i, j, shift in zip(slices, bounds[:-1], bounds[1:], shifts):
        if j > i:
            chars = layout.char_offsets
            texts.append(layout.step_spans.text[chars[booked_l[i] + shift] : chars[booked_l[j - 1] + shift + 1]])
    work_of = np.repeat(np.repeat(np.arange(len(works)), per_work), counts)[keep]
    return StepSpans(n[keep], np.bincount(work_of, minlength=len(works)), (first & np.concatenate(cut_before))[keep],
                     (last & np.concatenate(cut_after))[keep], last[keep], np.concatenate(facts)[keep], "".join(texts))


def same(a: StepSpans, b: StepSpans) -> bool:
    return a.text == b.text and all(np.array_equal(getattr(a, f), getattr(b, f))
                                    for f in ("lens", "per_stream", "cut_before", "cut_after", "last", "facts"))


def main() -> None:
    streams, rounds = int(sys.argv[1]), int(sys.argv[2])
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 7
    kept = []
    original = scheduler.StepPlan.step_spans

    def keeping(plan):
        kept.append([w for w in plan.work if w.n_tokens])
        return original(plan)

    scheduler.StepPlan.step_spans = keeping
    args = argparse.Namespace(streams=streams, chunk=2048, rounds=rounds, step_tokens=32768, man_text=True,
                              profile=False, no_model=True, busy_threads=0, step_switch_interval=None,
                              tokenize_procs=False)
    engine_host.measure(load_model("default", "cpu"), args)
    scheduler.StepPlan.step_spans = original
    slices = sum(len(w.slices) for works in kept for w in works)
    assert all(same(scheduler.step_spans(w), reference(w)) for w in kept), "step_spans differs from the reference"
    for name, fn in (("reference (9fcb3f3)", reference), ("this tree", scheduler.step_spans)) * 2:
        passes = []
        for _ in range(repeats):
            t0 = time.thread_time()
            for works in kept:
                fn(works)
            passes.append(time.thread_time() - t0)
        print(f"{name:20s} {1e3 * statistics.median(passes) / len(kept):.3f} ms a step (median of {repeats}; "
              f"{len(kept)} steps, {slices / len(kept):.0f} slices a step)")


if __name__ == "__main__":
    main()
