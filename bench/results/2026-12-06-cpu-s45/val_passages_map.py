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
from quality import DEFAULT_SETS, make_passages, recall, student_streams  # noqa: E402

from streamret.model.spec import load_model  # noqa: E402
from streamret.train.prepare import read_source, sources_of_split  # noqa: E402
from streamret.train.teacher import load_teacher  # noqa: E402

distill = Path(".distill")
loaded = load_model(sys.argv[1], "cpu")
docs = [(d, text, None) for name in sources_of_split(distill, "val")
        for d, text in read_source(distill / "data" / f"{name}.jsonl.xz")]
rng = np.random.default_rng(DEFAULT_SETS["seed"])
pairs = make_passages(docs, loaded.tokenizer.encode, DEFAULT_SETS["passages"], rng)
passages, queries = [p for p, _ in pairs], [q for _, q in pairs]
gold = torch.arange(len(pairs))
teacher = load_teacher(distill / "teacher")
tp, tq = teacher.embed_windows(passages).float(), teacher.embed_windows(queries).float()
cpu = torch.device("cpu")
sp = student_streams(loaded.model, passages, cpu, 1024, 256, "passages")[0]
sq = student_streams(loaded.model, queries, cpu, 1024, 256, "queries")[0]
dmap = loaded.roles.document_map


def mapped(e):
    return F.normalize(torch.from_numpy(np.asarray(dmap(e.numpy()), dtype=np.float32)), dim=-1)


r = lambda q, p: float(recall(q, p, gold)["recall@10"].mean())  # noqa: E731
rows = {"teacher": r(tq, tp), "plain": r(sq, sp), "map on passages": r(sq, mapped(sp)),
        "map on both": r(mapped(sq), mapped(sp))}
print(json.dumps(rows, indent=1))
