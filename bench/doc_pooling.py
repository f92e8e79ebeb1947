"""Which one vector per document should the student be taught? (issue 18; teacher side only, CPU is enough)

The student's whole-document embedding is distilled toward the normalised mean of the teacher's window
embeddings, and by session 18 it finds documents as well as that mean does (recall@10 0.885 against 0.887).
Issue 18 asks for 0.02 more than the mean. This script asks whether another pooling of the same teacher
windows finds the held-out documents better: if one does, it is the document target to distil toward next.
Every statistic a pooling uses comes from the training sources, never from the held-out set:

  mean        the normalised mean of the windows (bench/quality.py's "teacher, windows averaged")
  centred:A   the mean less A times mu, the mean direction of training windows, then normalised
  distinct:P  windows weighted by (1 - cos(window, mu))^P: windows like everything else count less
  whiten:A:S  the mean less mu, times C^-A, C the training windows' covariance shrunk by S toward its mean
              variance (S = 0.1: 0.9 C + 0.1 tr(C)/384 I), then normalised: directions that every text varies
              along count less. Only the documents are mapped, queries stay as they are, so a search still
              compares a passage embedding with a document embedding (score q.C^-A(d - mu), up to d's norm)
  max         not one vector: a document scores its best window (a multi-vector index's ceiling)

Queries are the teacher's embeddings of the quality sets' document queries, unchanged (a search compares
them with the documents). The held-out window embeddings are cached in OUT (3.35 M tokens: 18 min on the
2 CPU cores beside another job in session 18; quality.py's teacher phase embeds the same windows in 13.5 min).

    python bench/doc_pooling.py --data .quality/heldout --distill .distill --out OUT
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from quality import (  # noqa: E402
    DEFAULT_SETS,
    averaged,
    bucket_name,
    build_eval_sets,
    by_length,
    doc_windows,
    recall,
    teacher_embed,
)

from streamret.model.document_map import DocumentMap  # noqa: E402
from streamret.model.tokenizer import HFTokenizer  # noqa: E402
from streamret.train.document_map import training_windows  # noqa: E402
from streamret.train.teacher import load_teacher  # noqa: E402

BATCH_TOKENS = 1 << 13


def pool(name: str, win: torch.Tensor, owner: torch.Tensor, n_docs: int, train: torch.Tensor) -> torch.Tensor:
    """One normalised vector per document from its (normalised) window embeddings; train: the (normalised)
    embeddings of training windows, whose statistics a pooling may use."""
    mu = train.mean(0)
    if name == "mean":
        return averaged(win, owner.tolist(), n_docs)
    kind, _, arg = name.partition(":")
    if kind == "centred" and arg:
        return F.normalize(averaged(win, owner.tolist(), n_docs) - float(arg) * mu, dim=-1)
    if kind == "distinct" and arg:
        w = (1 - win @ mu / mu.norm()).clamp_min(0) ** float(arg)
        sums = torch.zeros(n_docs, win.shape[1]).index_add_(0, owner, win * w[:, None])
        return F.normalize(sums, dim=-1)
    if kind == "whiten" and arg.count(":") == 1:
        return whitened(averaged(win, owner.tolist(), n_docs), train, arg)
    raise ValueError(f"unknown pooling {name!r}; use mean, centred:A, distinct:P or whiten:A:S (A, P, S numbers)")


def whitened(vectors: torch.Tensor, train: torch.Tensor, spec: str) -> torch.Tensor:
    """vectors less the mean of train's rows, times `whitening(train, A, S)` for spec "A:S", normalised."""
    power, shrink = map(float, spec.split(":"))
    return torch.from_numpy(DocumentMap.fit(train, "", power, shrink)(vectors.numpy()))  # the shipped map's code


def max_window_hits(queries: torch.Tensor, win: torch.Tensor, owner: torch.Tensor, n_docs: int,
                    gold: torch.Tensor, k: int = 10) -> np.ndarray:
    """Per query, whether its document is among the k whose best window is nearest."""
    sims = queries @ win.T  # [q, windows]
    best = torch.full((len(queries), n_docs), -2.0).scatter_reduce(1, owner.expand(len(queries), -1), sims, "amax")
    return (best.topk(k, dim=1).indices == gold[:, None]).any(1).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=".quality/heldout", help="held-out sources (quality_pack's heldout/)")
    ap.add_argument("--distill", default=".distill", help="prepare's folder: training sources and the full teacher")
    ap.add_argument("--out", required=True, help="folder for the cached window embeddings and doc_pooling.json")
    ap.add_argument("--train-windows", type=int, default=64, help="training windows per source for mu")
    ap.add_argument("--poolings", nargs="+",
                    default=["mean", "centred:0.5", "centred:1.0", "distinct:1", "distinct:2"])
    args = ap.parse_args()
    for name in args.poolings:  # a misspelt pooling stops here, not after the 13 minutes of embedding
        try:
            pool(name, torch.eye(2), torch.tensor([0, 1]), 2, torch.eye(2))
        except ValueError as e:
            ap.error(str(e))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    teacher_dir = Path(args.distill) / "teacher"
    tok = HFTokenizer(teacher_dir)
    teacher = load_teacher(teacher_dir, torch.device("cpu"), torch.float32)
    sets = build_eval_sets(Path(args.data), tok, DEFAULT_SETS)
    windows, owner_list = doc_windows(sets.doc_ids)
    owner, gold, n_docs = torch.tensor(owner_list), torch.tensor(sets.doc_gold), len(sets.doc_ids)

    cache = out / "windows.npz"
    z = np.load(cache) if cache.is_file() else None
    if z is not None and z["fingerprint"].item() == sets.fingerprint():
        win, queries = torch.from_numpy(z["windows"]).float(), torch.from_numpy(z["queries"]).float()
    else:
        print(f"teacher: {len(windows)} held-out windows ({sum(map(len, windows)):,} tokens) ...", flush=True)
        win = F.normalize(teacher_embed(teacher, windows, torch.device("cpu"), BATCH_TOKENS)[0], dim=-1)
        queries = teacher_embed(teacher, sets.doc_queries, torch.device("cpu"), BATCH_TOKENS)[0]
        np.savez_compressed(cache, windows=win.numpy().astype(np.float16), queries=queries.numpy().astype(np.float16),
                            fingerprint=np.array(sets.fingerprint()))
    train = training_windows(Path(args.distill), tok, args.train_windows, np.random.default_rng(0))
    train_cache = out / f"train_windows_{args.train_windows}.npy"
    if train_cache.is_file():
        train_emb = torch.from_numpy(np.load(train_cache)).float()
    else:
        train_emb = F.normalize(teacher_embed(teacher, train, torch.device("cpu"), BATCH_TOKENS)[0], dim=-1)
        np.save(train_cache, train_emb.numpy())
    mu = train_emb.mean(0)

    q_len = np.array([len(sets.doc_ids[g]) for g in sets.doc_gold])
    rows = {}
    for name in args.poolings:
        hits = recall(queries, pool(name, win, owner, n_docs, train_emb), gold)["recall@10"]
        rows[name] = {"recall@10": float(hits.mean()), "by_length": by_length(hits, q_len)}
    hits = max_window_hits(queries, win, owner, n_docs, gold)
    rows["max"] = {"recall@10": float(hits.mean()), "by_length": by_length(hits, q_len)}
    result = {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "command": " ".join(sys.argv), "sets": DEFAULT_SETS,
              "fingerprint": sets.fingerprint(), "train_windows": len(train), "mu_norm": float(mu.norm()),
              "windows": len(windows), "queries": len(sets.doc_queries), "poolings": rows}
    (out / "doc_pooling.json").write_text(json.dumps(result, indent=1))
    print(f"training windows for mu: {len(train)} (|mu| {mu.norm():.3f}); {len(sets.doc_queries)} queries, "
          f"{n_docs} documents, {len(windows)} windows")
    print(f"| pooling | recall@10 | {' | '.join(bucket_name(b) for b in rows['mean']['by_length'])} |")
    print("| --- " * (2 + len(rows["mean"]["by_length"])) + "|")
    for name, r in rows.items():
        cells = " | ".join("-" if b["recall@10"] is None else f"{b['recall@10']:.3f} ({b['queries']})"
                           for b in r["by_length"])
        print(f"| {name} | {r['recall@10']:.3f} | {cells} |")
    print(f"wrote {out / 'doc_pooling.json'}")


if __name__ == "__main__":
    main()
