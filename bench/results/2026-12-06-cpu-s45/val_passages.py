"""Session 45 (issue 18): quality.py's passage figures on the validation sources (split "val" of a prepared folder,
never trained on), float32 on the CPU, for soups w x A + (1 - w) x B of two checkpoints fine-tuned from the same
weights; the teacher embedded here from the prepared folder's full teacher. Chooses a soup weight without reading
the held-out sources.

    python bench/results/2026-12-06-cpu-s45/val_passages.py A B --weights 0 0.25 0.5 0.75 1 [--out FILE]
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, "."), sys.path.insert(0, "bench")
import numpy as np  # noqa: E402
import torch  # noqa: E402
from quality import DEFAULT_SETS, make_passages, recall, student_streams  # noqa: E402

from streamret.model.checkpoint import load_checkpoint  # noqa: E402
from streamret.train.average import weighted_mean  # noqa: E402
from streamret.train.prepare import read_source, sources_of_split  # noqa: E402
from streamret.train.teacher import load_teacher  # noqa: E402

CPU = torch.device("cpu")


def validation_passages(distill: Path, encode, n: int = DEFAULT_SETS["passages"]):
    """(passages, queries) of the validation sources, made as quality.py makes its held-out passage set."""
    docs = [(d, text, None) for name in sources_of_split(distill, "val")
            for d, text in read_source(distill / "data" / f"{name}.jsonl.xz")]
    pairs = make_passages(docs, encode, n, np.random.default_rng(DEFAULT_SETS["seed"]))
    return [p for p, _ in pairs], [q for _, q in pairs]


def teacher_side(distill: Path, passages, queries) -> tuple[torch.Tensor, torch.Tensor]:
    teacher = load_teacher(distill / "teacher")
    return teacher.embed_windows(passages).float(), teacher.embed_windows(queries).float()


def student_side(model, passages, queries) -> tuple[torch.Tensor, torch.Tensor]:
    return (student_streams(model, passages, CPU, 1024, 256, "passages")[0],
            student_streams(model, queries, CPU, 1024, 256, "queries")[0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("a"), ap.add_argument("b")
    ap.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    ap.add_argument("--distill", default=".distill")
    ap.add_argument("--passages", type=int, default=DEFAULT_SETS["passages"])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    distill = Path(args.distill)
    ma, tok = load_checkpoint(args.a)
    mb, _ = load_checkpoint(args.b)
    ma, mb = ma.float().eval(), mb.float().eval()  # float32 on the CPU, as quality.py reads it there
    passages, queries = validation_passages(distill, tok.encode, args.passages)
    gold = torch.arange(len(passages))
    tp, tq = teacher_side(distill, passages, queries)
    rows = {"passages": len(passages), "teacher_recall@10": float(recall(tq, tp, gold)["recall@10"].mean())}
    print(json.dumps(rows), flush=True)
    states = [{k: v.clone() for k, v in ma.state_dict().items()}, mb.state_dict()]
    for w in args.weights:
        ma.load_state_dict(weighted_mean(states, [w, 1 - w]))
        sp, sq = student_side(ma, passages, queries)
        hits = recall(sq, sp, gold)["recall@10"]
        rows[f"w={w}"] = {"mean_cosine_student_teacher": float((sp * tp).sum(-1).mean()),
                          "student_recall@10": float(hits.mean()), "hits": int(hits.sum())}
        print(f"w={w}", json.dumps(rows[f"w={w}"]), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
