"""Build the small folder (default .quality/) that the quality benchmark's teacher phase carries to the GPU.

    python -m streamret.train.quality_pack --distill .distill --out .quality

One GPU call carries at most 64 MiB with the working tree, whose student weights take most of it, so
the teacher phase of `bench/quality.py` gets only what it needs:

    <out>/heldout/manifest.json, data/<source>.jsonl.xz    the held-out sources (same layout as .distill)
    <out>/teacher/                                           the teacher, every matrix int8 and only the
                                                             word embeddings of tokens the held-out text uses
    <out>/pack.json                                          sizes, and the shrunk teacher's cosine to the full one

The student phase carries <out>/heldout and the teacher phase's outputs, never the teacher.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import torch

from ..model.tokenizer import HFTokenizer
from .prepare import read_source, sources_of_split
from .teacher import CONTENT, load_teacher, shrink_teacher


def held_out_names(distill: Path) -> list[str]:
    return sources_of_split(distill, "eval")


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def build(distill: Path, out: Path, check_windows: int = 256, seed: int = 0) -> dict:
    names = held_out_names(distill)
    if not names:
        raise ValueError(f"{distill}/manifest.json lists no held-out (split 'eval') source")
    if out.exists():
        shutil.rmtree(out)
    (out / "heldout" / "data").mkdir(parents=True)
    manifest = json.loads((distill / "manifest.json").read_text())
    manifest["sources"] = {n: manifest["sources"][n] for n in names}
    (out / "heldout" / "manifest.json").write_text(json.dumps(manifest, indent=1))
    tok = HFTokenizer(distill / "teacher")
    used: set[int] = set()
    windows: list[list[int]] = []
    rng = np.random.default_rng(seed)
    for name in names:
        src = distill / "data" / f"{name}.jsonl.xz"
        shutil.copyfile(src, out / "heldout" / "data" / src.name)
        for _, text in read_source(src):
            ids = tok.encode(text)
            used.update(ids)
            if len(ids) > CONTENT:
                s = int(rng.integers(0, len(ids) - CONTENT))
                windows.append(ids[s : s + CONTENT])
    shrink_teacher(distill / "teacher", out / "teacher", sorted(used))

    # how far the int8 teacher moves from the one that taught the student, on held-out windows
    picks = rng.choice(len(windows), min(check_windows, len(windows)), replace=False)
    sample = [windows[i] for i in picks]
    full = load_teacher(distill / "teacher").embed_windows(sample)
    small = load_teacher(out / "teacher").embed_windows(sample)
    cos = (full * small).sum(-1)
    report = {
        "sources": names, "tokens_kept": len(used),
        "heldout_bytes": folder_bytes(out / "heldout"), "teacher_bytes": folder_bytes(out / "teacher"),
        "cosine_to_full_teacher": {"windows": len(sample), "min": float(cos.min()), "mean": float(cos.mean())},
    }
    (out / "pack.json").write_text(json.dumps(report, indent=1))
    return report


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Build the quality benchmark's carried folder (held-out data + teacher).")
    ap.add_argument("--distill", default=".distill", help="folder written by streamret.train.prepare")
    ap.add_argument("--out", default=".quality", help="output folder (git-ignored; replaced if it exists)")
    args = ap.parse_args(argv)
    torch.set_grad_enabled(False)
    report = build(Path(args.distill), Path(args.out))
    total = folder_bytes(Path(args.out))
    print(json.dumps(report, indent=1))
    print(f"wrote {args.out} ({total} bytes, {total / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
