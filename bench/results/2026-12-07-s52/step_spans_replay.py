"""Session 52 (workplace VM): the step thread's `step_spans` (the schedule part's array work) replayed on the steps
of a real engine run: the engine (bench/engine_host.py, --no-model: a stand-in for the model) on the manual pages,
STREAMS streams each appending one 2 KB chunk a round; every step's StreamWork list is kept, then step_spans is
timed over all of them, REPEATS times, by thread CPU (the median pass printed), and each result checked equal to
`StepSpans.of` of the slices' span objects (the reference `step_spans` is tested against). Session 52 timed its
whole-item variant against the tree's, run from each tree in turn (RESULTS).

    python bench/results/2026-12-07-s52/step_spans_replay.py 256 8
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
from bench import engine_host  # noqa: E402
from streamret.engine import scheduler  # noqa: E402
from streamret.engine.segments import StepSpans  # noqa: E402
from streamret.model.spec import load_model  # noqa: E402


def reference(works):  # what step_spans must equal: the spans as objects (Slice.spans), then StepSpans.of
    return StepSpans.of([w.spans() for w in works])


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
    assert all(same(scheduler.step_spans(w), reference(w)) for w in kept), "step_spans differs from StepSpans.of"
    for name, fn in (("StepSpans.of", reference), ("step_spans", scheduler.step_spans)) * 2:
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
