"""Session 44 diagnostic (issue 18): the teacher's chunk mean (quality.py's teacher phase, .device/qT) with a document
map fitted on the teacher's own embeddings of the 3,560 training windows document_map.py draws (seed 0), against
the teacher's own query embeddings. Run from the repository root: python bench/results/2026-12-06-cpu-s44/teacher_map.py
(its output: teacher_map.txt; 3 min on the 2-core CPU for the windows)."""
import sys
from pathlib import Path
sys.path.insert(0, "."); sys.path.insert(0, "bench")
import numpy as np, torch, torch.nn.functional as F
from quality import DEFAULT_SETS, build_eval_sets, recall, by_length
from doc_pooling import whitened
from streamret.model.tokenizer import HFTokenizer
from streamret.train.document_map import training_windows
from streamret.train.teacher import load_teacher
out = Path(".device/teacher_train_128.npy")
tok = HFTokenizer(".distill/teacher")
if not out.exists():
    wins = training_windows(Path(".distill"), tok, 128, np.random.default_rng(0))
    t = load_teacher(".distill/teacher")
    torch.set_num_threads(2)
    embs = [t.embed_windows(wins[i:i + 64]) for i in range(0, len(wins), 64)]
    np.save(out, np.concatenate([np.asarray(e) for e in embs]))
train = torch.from_numpy(np.load(out)).float()
z = np.load(".device/qT/teacher_embeddings.npz")
sets = build_eval_sets(Path(".quality/heldout"), tok, DEFAULT_SETS)
gold = torch.tensor(sets.doc_gold)
q_len = np.array([len(sets.doc_ids[g]) for g in sets.doc_gold])
q = torch.from_numpy(z["doc_queries"]).float(); d = torch.from_numpy(z["teacher_chunks"]).float()
for name, docs in [("none", F.normalize(d, dim=-1))] + [(f"whiten:{s}", whitened(d, train, s)) for s in ("1.0:0.1", "0.75:0.1", "1.0:0.05", "0.5:0.1")]:
    hits = recall(q, docs, gold)["recall@10"]
    print(name, f"{float(hits.mean()):.3f}", [round(b["recall@10"], 3) for b in by_length(hits, q_len) if b["recall@10"] is not None])
