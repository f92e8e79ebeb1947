"""Does a fixed linear map of the student's document embeddings find held-out documents better? (issue 18, CPU)

bench/doc_pooling.py asks which pooling of the teacher's windows to distil toward; this asks the same of the
student as it ships: its whole-document embeddings (read as streams, as quality.py's "student" row) mapped by
`doc_pooling.pool`'s whitening, (d - mu) C^-A, C the covariance of the student's embeddings of training windows
(never held-out text) shrunk by S toward its mean variance. Queries stay the student's own passage embeddings,
unmapped: a search still compares what a user would compare. Embeddings are cached in OUT, by the model's weights.

A and S are picked on a validation search built the same way from the sources prepare keeps for validation
(split "val": manuals from publishers neither trained on nor held out; --val-sources names others, training
sources included, which the student has read): the map with the best validation recall@10 is the pick, and the
held-out figures of every map are printed beside it (read the pick's; the others say how much the choice
matters, not a second pick).

    python bench/doc_whitening.py --data .quality/heldout --distill .distill --out OUT [--maps whiten:0.5:0.1 ...]

`--maps shipped` reads the model's own document map (the `document` role, streamret/model/document_map.py).
"""

from __future__ import annotations

import argparse
import hashlib
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

from doc_pooling import training_windows, whitened  # noqa: E402
from quality import DEFAULT_SETS, bucket_name, build_eval_sets, by_length, recall, student_streams  # noqa: E402

from streamret.model.spec import load_model  # noqa: E402
from streamret.train.prepare import sources_of_split  # noqa: E402
from streamret.train.teacher import CONTENT  # noqa: E402


def mapped(docs: torch.Tensor, train: torch.Tensor, name: str, roles=None) -> torch.Tensor:
    """The documents' embeddings as they are ("none"), whitened ("whiten:A:S"), or in the model's `document` role
    ("shipped": its document map, as the engine applies it), normalised."""
    if name == "none":
        return F.normalize(docs, dim=-1)
    if name == "shipped":
        if roles is None or "document" not in roles.available:
            raise ValueError("map 'shipped': this model ships no document map (python -m streamret.train.document_map)")
        return torch.from_numpy(roles.as_role(docs.numpy(), "document"))
    kind, _, arg = name.partition(":")
    if kind != "whiten" or arg.count(":") != 1:
        raise ValueError(f"unknown map {name!r}; use none, shipped or whiten:A:S (A, S numbers)")
    return whitened(docs, train, arg)


def weights_tag(model: torch.nn.Module) -> str:
    """A short hash of the model's weights."""
    h = hashlib.sha1()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:12]


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
    ap.add_argument("--train-window-tokens", type=int, default=CONTENT,
                    help="tokens a training window (fewer where a document is shorter)")
    ap.add_argument("--maps", nargs="+", default=["none"] + [f"whiten:{a}:{s}" for a in (0.5, 0.75, 1.0, 1.5)
                                                               for s in (0.05, 0.1, 0.3)])
    ap.add_argument("--val-sources", nargs="+",
                    help="validation sources (default: every source of split 'val' in --distill's manifest)")
    ap.add_argument("--val-docs", type=int, default=400, help="validation documents at most (a seeded sample)")
    args = ap.parse_args()
    loaded = load_model(args.model, "cpu")
    for name in args.maps:
        try:
            if name != "shipped":
                mapped(torch.eye(2), torch.eye(2), name)
            else:
                mapped(torch.zeros(1, loaded.model.config.out_embed_dim), torch.eye(2), name, loaded.roles)
        except ValueError as e:
            ap.error(str(e))
    model, tok = loaded.model, loaded.tokenizer
    out = Path(args.out)
    cache = out / f"cache_{weights_tag(model)}"  # (embeddings of another model's weights are not these)
    cache.mkdir(parents=True, exist_ok=True)
    sets = build_eval_sets(Path(args.data), tok, DEFAULT_SETS)
    tag = sets.fingerprint()[:12]
    dev = torch.device("cpu")
    docs = cached(cache / f"docs_{tag}.npy",
                  lambda: student_streams(model, sets.doc_ids, dev, 1024, 16, "documents")[0])
    queries = cached(cache / f"queries_{tag}.npy",
                     lambda: student_streams(model, sets.doc_queries, dev, 1024, 256, "document queries")[0])
    train_ids = training_windows(Path(args.distill), tok, args.train_windows, np.random.default_rng(0),
                                 args.train_window_tokens)
    length = f"x{args.train_window_tokens}" if args.train_window_tokens != CONTENT else ""
    train = cached(cache / f"train_{args.train_windows}{length}.npy",
                   lambda: student_streams(model, train_ids, dev, 1024, 256, "training windows")[0])
    args.val_sources = args.val_sources or validation_sources(Path(args.distill))
    val_sets = build_eval_sets(validation_folder(Path(args.distill), args.val_sources, out), tok,
                               DEFAULT_SETS | {"docs": args.val_docs, "passages": 16})
    vtag = val_sets.fingerprint()[:12]
    val_docs = cached(cache / f"val_docs_{vtag}.npy",
                      lambda: student_streams(model, val_sets.doc_ids, dev, 1024, 16, "validation documents")[0])
    val_queries = cached(cache / f"val_queries_{vtag}.npy", lambda: student_streams(
        model, val_sets.doc_queries, dev, 1024, 256, "validation queries")[0])
    rows = {"validation": searches(val_sets, val_docs, val_queries, train, args.maps, loaded.roles),
            "held_out": searches(sets, docs, queries, train, args.maps, loaded.roles)}
    pick = max(args.maps, key=lambda m: rows["validation"][m]["recall@10"])
    result = {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "command": " ".join(sys.argv), "model": args.model,
              "fingerprint": sets.fingerprint(), "validation_fingerprint": val_sets.fingerprint(),
              "validation_sources": args.val_sources, "train_windows": len(train), "pick": pick,
              "queries": len(sets.doc_queries), "documents": len(sets.doc_ids),
              "validation_queries": len(val_sets.doc_queries), "validation_documents": len(val_sets.doc_ids),
              "maps": rows}
    (out / "doc_whitening.json").write_text(json.dumps(result, indent=1))
    print(f"{len(train)} training windows; held out: fingerprint {sets.fingerprint()[:16]}, "
          f"{len(sets.doc_queries)} queries, {len(sets.doc_ids)} documents; validation "
          f"({', '.join(args.val_sources)}): {len(val_sets.doc_queries)} queries, {len(val_sets.doc_ids)} documents; "
          f"pick (best on validation): {pick}")
    buckets = [bucket_name(b) for b in rows["held_out"][args.maps[0]]["by_length"]]
    print(f"| map | validation recall@10 | held out recall@10 | {' | '.join(buckets)} |")
    print("| --- " * (3 + len(buckets)) + "|")
    for name in args.maps:
        r = rows["held_out"][name]
        cells = " | ".join("-" if b["recall@10"] is None else f"{b['recall@10']:.3f} ({b['queries']})"
                           for b in r["by_length"])
        print(f"| {name}{' (pick)' if name == pick else ''} | {rows['validation'][name]['recall@10']:.3f} | "
              f"{r['recall@10']:.3f} | {cells} |")


def searches(sets, docs: torch.Tensor, queries: torch.Tensor, train: torch.Tensor, maps: list[str], roles=None) -> dict:
    """Per map, recall@10 of the sets' document queries overall and by length bucket."""
    gold = torch.tensor(sets.doc_gold)
    q_len = np.array([len(sets.doc_ids[g]) for g in sets.doc_gold])
    rows = {}
    for name in maps:
        hits = recall(queries, mapped(docs, train, name, roles), gold)["recall@10"]
        rows[name] = {"recall@10": float(hits.mean()), "by_length": by_length(hits, q_len)}
    return rows


def validation_sources(distill: Path) -> list[str]:
    """The sources prepare keeps for validation (split "val")."""
    names = sources_of_split(distill, "val")
    if not names:
        raise SystemExit(f"{distill} holds no validation source (split 'val'): build them with `python -m "
                         "streamret.train.prepare --out DISTILL --only django-doc sqlite-doc sphinx-doc kicad-doc`")
    return names


def validation_folder(distill: Path, sources: list[str], out: Path) -> Path:
    """A folder in quality_pack's layout whose eval split is the given validation or training sources (links to
    their data; never a held-out source)."""
    known = sources_of_split(distill, "val") + sources_of_split(distill, "train")
    unknown = [s for s in sources if s not in known]
    if unknown:
        raise SystemExit(f"--val-sources {unknown}: not validation or training sources of {distill}")
    folder = out / f"validation_{'_'.join(sorted(sources))}"
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for name in sources:
        link = folder / "data" / f"{name}.jsonl.xz"
        if not link.exists():
            link.symlink_to((distill / "data" / f"{name}.jsonl.xz").resolve())
    (folder / "manifest.json").write_text(json.dumps({"sources": {s: {"split": "eval"} for s in sources}}))
    return folder


if __name__ == "__main__":
    main()
