"""Session 44 (issue 18): quality.py's passage figures alone (mean cosine to the teacher, passage recall@10 against
the teacher's), float32 on the CPU, for each model named; the teacher's side from the teacher phase's outputs.

    python bench/results/2026-12-06-cpu-s44/passages_cpu.py --teacher-out .device/qT MODEL [MODEL ...]
"""
import argparse
import json
import sys

sys.path.insert(0, "."), sys.path.insert(0, "bench")
import torch  # noqa: E402
from quality import recall, sets_of_teacher_phase, student_streams, teacher_outputs  # noqa: E402

from streamret.model.spec import load_model  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--data", default=".quality/heldout")
ap.add_argument("--teacher-out", default=".device/qT")
ap.add_argument("models", nargs="+")
args = ap.parse_args()
meta, temb = teacher_outputs(args.teacher_out)
rows = {}
for name in args.models:
    loaded = load_model(name, "cpu")
    sets = sets_of_teacher_phase(args.data, loaded.tokenizer, meta, args.teacher_out)
    gold = torch.arange(len(sets.passages))
    dev = torch.device("cpu")
    sp = student_streams(loaded.model, sets.passages, dev, 1024, 256, "passages")[0]
    sq = student_streams(loaded.model, sets.queries, dev, 1024, 256, "passage queries")[0]
    rows[name] = {"mean_cosine_student_teacher": float((sp * temb["passages"]).sum(-1).mean()),
                  "student_recall@10": float(recall(sq, sp, gold)["recall@10"].mean()),
                  "teacher_recall@10": float(recall(temb["queries"], temb["passages"], gold)["recall@10"].mean())}
    print(name, json.dumps(rows[name]), flush=True)
print(json.dumps(rows, indent=1))
