"""Does a fixed linear map of the student's document embeddings find held-out documents better? (issue 18, CPU)

bench/doc_pooling.py asks which pooling of the teacher's windows to distil toward; this asks the same of the
student as it ships: its whole-document embeddings (read as streams, as quality.py's "student" row) mapped by
`doc_pooling.pool`'s whitening, (d - mu) C^-A, C the covariance of the student's embeddings of training windows
(never held-out text) shrunk by S toward its mean variance. Queries stay the student's own passage embeddings,
unmapped: a search still compares what a user would compare. Embeddings are cached in OUT.

    python bench/doc_whitening.py --data .quality/heldout --distill .distill --out OUT [--maps whiten:0.5:0.1 ...]
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

from doc_pooling import training_windows, whitening  # noqa: E402
from quality import DEFAULT_SETS, bucket_name, build_eval_sets, by_length, recall, student_streams  # noqa: E402

from streamret.model.spec import load_model  # noqa: E402


def mapped(docs: torch.Tensor, train: torch.Tensor, name: str) -> torch.Tensor:
    """The documents' embeddings as they are ("none"), or whitened ("whiten:A:S"), normalised."""
    if name == "none":
        return F.normalize(docs, dim=-1)
    kind, _, arg = name.partition(":")
    if kind != "whiten" or arg.count(":") != 1:
        raise ValueError(f"unknown map {name!r}; use none or whiten:A:S (A, S numbers)")
    power, shrink = map(float, arg.split(":"))
    return F.normalize((docs - train.mean(0)) @ whitening(train, power, shrink), dim=-1)


def cached(path: Path, make) -> torch.Tensor:
    if path.is_file():
        return torch.from_numpy(np.load(path)).float()
    out = make()
    np.save(path, out.numpy())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=".quality/heldout", help="held-out sources (quality_pack's heldout/)")
    ap.add_argument("--distill", default=".distill", help="prepare's folder: the training sources")
    ap.add_argument("--model", default="default")
    ap.add_argument("--out", required=True)
    ap.add_argument("--train-windows", type=int, default=128, help="training windows per source")
    ap.add_argument("--maps", nargs="+", default=["none", "whiten:0.25:0.1", "whiten:0.5:0.1", "whiten:0.5:0.3",
                                                  "whiten:1.0:0.3", "whiten:0.5:1.0"])
    args = ap.parse_args()
    for name in args.maps:
        try:
            mapped(torch.eye(2), torch.eye(2), name)
        except ValueError as e:
            ap.error(str(e))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    loaded = load_model(args.model, "cpu")
    model, tok = loaded.model, loaded.tokenizer
    sets = build_eval_sets(Path(args.data), tok, DEFAULT_SETS)
    tag = sets.fingerprint()[:12]
    dev = torch.device("cpu")
    docs = cached(out / f"docs_{tag}.npy",
                  lambda: student_streams(model, sets.doc_ids, dev, 1024, 16, "documents")[0])
    queries = cached(out / f"queries_{tag}.npy",
                     lambda: student_streams(model, sets.doc_queries, dev, 1024, 256, "document queries")[0])
    train_ids = training_windows(Path(args.distill), tok, args.train_windows, np.random.default_rng(0))
    train = cached(out / f"train_{args.train_windows}.npy",
                   lambda: student_streams(model, train_ids, dev, 1024, 256, "training windows")[0])
    gold = torch.tensor(sets.doc_gold)
    q_len = np.array([len(sets.doc_ids[g]) for g in sets.doc_gold])
    rows = {}
    for name in args.maps:
        hits = recall(queries, mapped(docs, train, name), gold)["recall@10"]
        rows[name] = {"recall@10": float(hits.mean()), "by_length": by_length(hits, q_len)}
    result = {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "command": " ".join(sys.argv), "model": args.model,
              "fingerprint": sets.fingerprint(), "train_windows": len(train), "queries": len(sets.doc_queries),
              "documents": len(sets.doc_ids), "maps": rows}
    (out / "doc_whitening.json").write_text(json.dumps(result, indent=1))
    print(f"fingerprint {sets.fingerprint()[:16]}; {len(train)} training windows; {len(sets.doc_queries)} queries, "
          f"{len(sets.doc_ids)} documents")
    print(f"| map | recall@10 | {' | '.join(bucket_name(b) for b in rows['none']['by_length'])} |")
    print("| --- " * (2 + len(rows["none"]["by_length"])) + "|")
    for name, r in rows.items():
        cells = " | ".join("-" if b["recall@10"] is None else f"{b['recall@10']:.3f} ({b['queries']})"
                           for b in r["by_length"])
        print(f"| {name} | {r['recall@10']:.3f} | {cells} |")


if __name__ == "__main__":
    main()
