"""Session 46 (issue 18): on the validation sources (never trained on), passage recall@10 of the student and of
the teacher by the query's length in tokens, float32 on the CPU: where the student's passages fall short of the
teacher's, to aim the passage InfoNCE's query lengths (data.QUERY_TOKENS, uniform one a step).

    python bench/results/2026-12-06-cpu-s46/val_query_lengths.py MODEL [MODEL ...] [--out FILE]
"""
import argparse
import json
import sys
from pathlib import Path

sys.path[:0] = [".", "bench", str(Path(__file__).parents[1] / "2026-12-06-cpu-s45")]
import numpy as np  # noqa: E402
import torch  # noqa: E402
from quality import recall  # noqa: E402
from val_passages import student_side, teacher_side, validation_passages  # noqa: E402

from streamret.model.checkpoint import load_checkpoint  # noqa: E402

BINS = (8, 13, 19, 27, 40, 65)  # query tokens: five buckets of about 400 queries each on this set


def by_query_length(hits: np.ndarray, lengths: np.ndarray) -> dict:
    return {f"{lo}-{hi - 1}": {"queries": int(m.sum()), "hits": int(hits[m].sum()),
                               "recall@10": round(float(hits[m].mean()), 4) if m.any() else None}
            for lo, hi in zip(BINS[:-1], BINS[1:]) for m in [(lengths >= lo) & (lengths < hi)]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--distill", default=".distill")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    distill = Path(args.distill)
    first, tok = load_checkpoint(args.models[0])
    passages, queries = validation_passages(distill, tok.encode)
    lengths = np.array([len(q) for q in queries])
    gold = torch.arange(len(passages))
    tp, tq = teacher_side(distill, passages, queries)
    rows = {"teacher": by_query_length(recall(tq, tp, gold)["recall@10"], lengths)}
    print("teacher", json.dumps(rows["teacher"]), flush=True)
    for name in args.models:
        model = (first if name == args.models[0] else load_checkpoint(name)[0]).float().eval()
        sp, sq = student_side(model, passages, queries)
        rows[name] = by_query_length(recall(sq, sp, gold)["recall@10"], lengths)
        print(name, json.dumps(rows[name]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
