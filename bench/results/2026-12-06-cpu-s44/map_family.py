"""Session 44 (issue 18): validation recall@10 only (the split "val" sources) of a wider family of document maps
for the shipped model: whitening (A, S) followed by a signed power P, and all-but-the-top (the mean and the top k
principal directions of the training windows removed). Reads the embeddings bench/doc_whitening.py cached in
.device/whiten (run it first). From the repository root: python bench/results/2026-12-06-cpu-s44/map_family.py"""
import sys, json
from pathlib import Path
sys.path.insert(0, "."); sys.path.insert(0, "bench")
import numpy as np, torch, torch.nn.functional as F
from quality import DEFAULT_SETS, build_eval_sets, recall, by_length
from doc_whitening import validation_folder, validation_sources
from streamret.model.spec import load_model
from streamret.model.document_map import whitening
cache = Path(".device/whiten/cache_47202a8a4d05")
tok = load_model("default", "cpu").tokenizer
vs = validation_sources(Path(".distill"))
val = build_eval_sets(validation_folder(Path(".distill"), vs, Path(".device/whiten")), tok, DEFAULT_SETS | {"docs": 400, "passages": 16})
vtag = val.fingerprint()[:12]
vd = torch.from_numpy(np.load(cache / f"val_docs_{vtag}.npy")).float(); vq = torch.from_numpy(np.load(cache / f"val_queries_{vtag}.npy")).float()
train = torch.from_numpy(np.load(cache / "train_128.npy")).float()
mu = train.mean(0)
def fam():
    for A in (0.5, 0.75, 1.0):
        for S in (0.05, 0.1, 0.3):
            W = whitening(train, A, S)
            for P in (1.0, 0.75, 0.5):
                yield f"w{A}:{S}:p{P}", lambda d, W=W, P=P: F.normalize(torch.sign(x:=(d - mu) @ W) * x.abs() ** P, dim=-1)
    for k in (1, 2, 4, 8, 16):
        x = train - mu; U = torch.linalg.svd(x, full_matrices=False).Vh[:k]
        yield f"abtt{k}", lambda d, U=U: F.normalize((d - mu) - ((d - mu) @ U.T) @ U, dim=-1)
gold = torch.tensor(val.doc_gold)
res = {}
for name, f in fam():
    res[name] = float(recall(vq, f(vd), gold)["recall@10"].mean())
for n, r in sorted(res.items(), key=lambda t: -t[1]): print(f"{n:18s} {r:.3f}")
