"""Session 45 (issue 18): does the document map help passage search? Validation passages (split "val"), float32 CPU,
one model with its document map: recall@10 with plain embeddings, with the map on the passages only (the document
role's use: plain queries against mapped documents) and on both sides; the teacher's for comparison.

    python bench/results/2026-12-06-cpu-s45/val_passages_map.py MODEL_FOLDER
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, "."), sys.path.insert(0, "bench")
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from quality import recall  # noqa: E402
from val_passages import student_side, teacher_side, validation_passages  # noqa: E402 (this folder)

from streamret.model.spec import load_model  # noqa: E402

distill = Path(".distill")
loaded = load_model(sys.argv[1], "cpu")
passages, queries = validation_passages(distill, loaded.tokenizer.encode)
gold = torch.arange(len(passages))
tp, tq = teacher_side(distill, passages, queries)
sp, sq = student_side(loaded.model, passages, queries)
dmap = loaded.roles.document_map


def mapped(e):
    return F.normalize(torch.from_numpy(np.asarray(dmap(e.numpy()), dtype=np.float32)), dim=-1)


r = lambda q, p: float(recall(q, p, gold)["recall@10"].mean())  # noqa: E731
rows = {"teacher": r(tq, tp), "plain": r(sq, sp), "map on passages": r(sq, mapped(sp)),
        "map on both": r(mapped(sq), mapped(sp))}
print(json.dumps(rows, indent=1))
