"""Fit a model's document map (the `document` embedding role, streamret/model/document_map.py) and save it beside
the weights.

    python -m streamret.train.document_map --distill .distill [--model default] [--out FOLDER]

The map's statistics come from the model's own embeddings of random windows of the training sources in `--distill`
(prepare's folder; never the held-out sources): `--windows` per source, `--window-tokens` tokens each, drawn with
`--seed`. The defaults are those bench/doc_whitening.py picked on a validation search of two training manuals
(session 42): 128 windows of 254 tokens a source, power 1.0, shrink 0.1. On the unseen validation sources of
session 44 the nine settings of power 0.5 to 1.0 lie within 3 queries of 396 of one another (0.932-0.939), too
close to prefer another. The map is written as document_map.safetensors into the model's folder (or --out), tagged
with the weights' fingerprint: retrained weights do not use an old map, and `role=document` says so until the map
is fitted again.

    python -m streamret.train.document_map --distill .distill --teacher .distill/teacher --power 0.5 --out DIR

fits the same statistics to the teacher's embeddings of those windows instead: the metric `distill --metric
DIR` measures the student's errors in (C^-1/2, so that an error e costs e C^-1 e, as the document map weighs it).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..model.document_map import DocumentMap
from ..model.spec import DEFAULT_MODEL_DIR, load_model
from .prepare import read_source, sources_of_split
from .teacher import CONTENT


def training_windows(distill: Path, tok, per_source: int, rng: np.random.Generator,
                     length: int = CONTENT) -> list[list[int]]:
    """Up to per_source random windows of `length` tokens (fewer where a document is shorter) from each training
    source of `distill`, in the manifest's order."""
    windows = []
    for name in sources_of_split(distill, "train"):
        docs = read_source(distill / "data" / f"{name}.jsonl.xz")
        for i in rng.choice(len(docs), min(per_source, len(docs)), replace=False):
            ids = tok.encode(docs[i][1])
            if len(ids) >= 16:
                s = int(rng.integers(0, max(1, len(ids) - length + 1)))
                windows.append(ids[s : s + length])
    return windows


@torch.no_grad()
def embed_windows(model, windows: list[list[int]], batch: int = 256, show_progress: bool = True) -> torch.Tensor:
    """Each window's stream embedding (float32 [len(windows), embed_dim]): the window read as a whole stream, in
    one forward with its batch-mates."""
    from tqdm.auto import tqdm

    dev = next(model.parameters()).device
    out = torch.empty(len(windows), model.config.out_embed_dim)
    bar = tqdm(total=sum(map(len, windows)), unit="tok", desc="training windows", disable=not show_progress)
    for b in range(0, len(windows), batch):
        group = windows[b : b + batch]
        ids = torch.tensor([t for w in group for t in w], device=dev)
        cu = torch.tensor(np.concatenate([[0], np.cumsum([len(w) for w in group])]), device=dev)
        _, state = model(ids, mode="chunkwise", state=model.init_state(len(group), dev), cu_seqlens=cu)
        out[b : b + len(group)] = model.stream_embedding(state).float().cpu()
        bar.update(len(ids))
    bar.close()
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--distill", default=".distill", help="prepare's folder: the training sources")
    ap.add_argument("--model", default="default", help="MODEL spec: default or a checkpoint folder")
    ap.add_argument("--out", default=None, help="folder to write document_map.safetensors (default: the model's)")
    ap.add_argument("--windows", type=int, default=128, help="training windows per source")
    ap.add_argument("--window-tokens", type=int, default=CONTENT, help="tokens a window (fewer in short documents)")
    ap.add_argument("--power", type=float, default=1.0, help="C^-power: 1 whitens fully, 0 only centres")
    ap.add_argument("--shrink", type=float, default=0.1, help="covariance shrinkage toward its mean variance, [0, 1]")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu (the map of record: float32) or cuda")
    ap.add_argument("--teacher", default=None,
                    help="a teacher folder (prepare's DISTILL/teacher): fit on its embeddings, for distill --metric")
    args = ap.parse_args(argv)
    if not (Path(args.distill) / "manifest.json").is_file():
        ap.error(f"--distill {args.distill}: no manifest.json there; build it with python -m "
                 f"streamret.train.prepare --out {args.distill}")
    if not 0.0 <= args.shrink <= 1.0:
        ap.error(f"--shrink {args.shrink}: use a number in [0, 1]")
    if args.teacher:
        return fit_teacher_metric(args, ap)
    if args.model.startswith("random:"):
        ap.error(f"--model {args.model}: random weights have no folder to keep a map in; use default or a folder")
    out = Path(args.out) if args.out else (DEFAULT_MODEL_DIR if args.model == "default" else Path(args.model))
    t0 = time.perf_counter()
    loaded = load_model(args.model, args.device, "float32")
    windows = training_windows(Path(args.distill), loaded.tokenizer, args.windows, np.random.default_rng(args.seed),
                               args.window_tokens)
    train = embed_windows(loaded.model, windows)
    doc_map = DocumentMap.fit(train, loaded.fingerprint, args.power, args.shrink)
    path = doc_map.save(out)
    print(f"{path}: fitted on {len(windows)} windows ({sum(map(len, windows)):,} tokens) of {args.distill} for "
          f"weights {loaded.fingerprint[:16]}; power {args.power}, shrink {args.shrink}; "
          f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)


def fit_teacher_metric(args: argparse.Namespace, ap: argparse.ArgumentParser) -> None:
    """--teacher: the map of the teacher's embeddings of the training windows, written to --out."""
    from ..model.tokenizer import HFTokenizer
    from .teacher import load_teacher

    if not args.out:
        ap.error("--teacher needs --out: the folder to write the teacher's map to (distill --metric reads it)")
    if not (Path(args.teacher) / "config.json").is_file():
        ap.error(f"--teacher {args.teacher}: no teacher there (prepare writes one to DISTILL/teacher)")
    if args.window_tokens > CONTENT:
        ap.error(f"--window-tokens {args.window_tokens}: the teacher reads at most {CONTENT} tokens a window")
    t0 = time.perf_counter()
    windows = training_windows(Path(args.distill), HFTokenizer(args.teacher), args.windows,
                               np.random.default_rng(args.seed), args.window_tokens)
    teacher = load_teacher(args.teacher, args.device)
    train = teacher.embed_windows(windows, batch_tokens=1 << 16).float().cpu()  # (about 256 windows a batch)
    label = "teacher:" + hashlib.sha1((Path(args.teacher) / "config.json").read_bytes()).hexdigest()[:16]
    path = DocumentMap.fit(train, label, args.power, args.shrink).save(args.out)
    print(f"{path}: the teacher's map, fitted on {len(windows)} windows of {args.distill}; power {args.power}, "
          f"shrink {args.shrink}; {time.perf_counter() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
