"""Build the training folder (default .train/) that one GPU call carries, from a .distill folder.

    python -m streamret.train.train_pack --distill .distill --out .train

A device call carries at most 64 MiB with the working tree, and the tree already holds the shipped
model (~36.5 MiB), which a run starting from it (`distill --init streamret/assets/default`) needs.
The full .distill (~49 MiB) does not fit beside it, so the pack holds:

    <out>/data/<source>.jsonl.xz   the chosen training sources (default: the five technical manuals of
                                   the shipped model's second run, the held-out sources' kind),
                                   recompressed, an evenly spaced subset of documents if needed to fit
                                   the budget
    <out>/teacher/                 the teacher, every matrix int8, only the word embeddings of tokens
                                   that text uses; no tokenizer.json (distill takes --init's, the same)
    <out>/manifest.json            those sources (split "train"), and "pack": sizes, budget, kept share

The budget defaults to 64 MiB less the git-tracked working tree and a margin.
"""

from __future__ import annotations

import argparse
import json
import lzma
import shutil
import subprocess
from pathlib import Path

from tokenizers import Tokenizer

from .prepare import read_source, sources_of_split
from .quality_pack import folder_bytes
from .sources import subsample
from .teacher import shrink_teacher

CALL_BYTES = 64 * 2**20  # what one device call carries, working tree included
MARGIN_BYTES = 3 * 2**20 // 2  # for files the tree gains (other branches merged) before the call
TECHNICAL = ("linux-doc", "git-doc", "debian-reference", "cfi", "gnu-standards")  # the README recipe's .train


def tracked_tree_bytes(repo: Path) -> int:
    """Bytes of the git-tracked files of the working tree at repo (what a device call always carries)."""
    out = subprocess.run(["git", "ls-files", "-z"], cwd=repo, capture_output=True, check=True).stdout
    return sum((repo / p).stat().st_size for p in out.decode().split("\0") if p and (repo / p).is_file())


def write_xz(docs: list[tuple[str, str]], path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    with lzma.open(path, "wt", encoding="utf-8", preset=9 | lzma.PRESET_EXTREME) as f:
        for doc_id, text in docs:
            f.write(json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n")
    return path.stat().st_size


def write_pack(distill: Path, out: Path, sources: dict[str, list[tuple[str, str]]], share: float, tok) -> dict:
    """Write data (share of each source's text) and the shrunk teacher; returns the pack's summary."""
    if out.exists():
        shutil.rmtree(out)
    used: set[int] = set()
    manifest: dict = {"sources": {}}
    for name, docs in sources.items():
        kept = subsample(docs, share * sum(len(t) for _, t in docs) / 1e6) if share < 1 else docs
        size = write_xz(kept, out / "data" / f"{name}.jsonl.xz")
        for enc in tok.encode_batch([t for _, t in kept], add_special_tokens=False):
            used.update(enc.ids)
        manifest["sources"][name] = {"split": "train", "docs": len(kept), "chars": sum(len(t) for _, t in kept),
                                     "xz_bytes": size}
    shrink_teacher(distill / "teacher", out / "teacher", sorted(used), with_tokenizer=False)
    manifest["pack"] = {"from": str(distill), "share": share, "tokens_kept": len(used),
                        "data_bytes": folder_bytes(out / "data"), "teacher_bytes": folder_bytes(out / "teacher")}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest["pack"]


def build(distill: Path, out: Path, names: list[str], budget: int) -> dict:
    """The largest evenly spaced share of the sources' documents whose pack fits in budget bytes."""
    known = sources_of_split(distill, "train")
    missing = [n for n in names if n not in known]
    if missing:
        raise ValueError(f"{missing} are not training sources of {distill}; choose from {known}")
    tok = Tokenizer.from_file(str(distill / "teacher" / "tokenizer.json"))
    sources = {n: read_source(distill / "data" / f"{n}.jsonl.xz") for n in names}
    share, best, written = 1.0, 0.0, None
    for _ in range(6):
        pack = write_pack(distill, out, sources, share, tok)
        total, written = folder_bytes(out), share
        if total <= budget:
            best = max(best, share)
            if share == 1.0 or budget - total < budget // 100:
                break
        # the teacher changes little with the text: move the text by the slack (or the overshoot)
        data = pack["data_bytes"]
        share = min(1.0, share * (data + budget - total) / data * 0.995)
    if not best:
        raise ValueError(f"no pack of {names} fits {budget} bytes; pass fewer --sources or a larger --max-mib")
    if written != best:
        pack = write_pack(distill, out, sources, best, tok)
    pack["bytes"], pack["budget_bytes"] = folder_bytes(out), budget
    (out / "manifest.json").write_text(json.dumps({**json.loads((out / "manifest.json").read_text()), "pack": pack},
                                                  indent=1))
    return pack


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Build the training folder one device call carries (data + teacher).")
    ap.add_argument("--distill", default=".distill", help="folder written by streamret.train.prepare")
    ap.add_argument("--out", default=".train", help="output folder (git-ignored; replaced if it exists)")
    ap.add_argument("--sources", nargs="+", default=list(TECHNICAL), help="training sources to carry")
    ap.add_argument("--max-mib", type=float, default=None,
                    help="size of the pack (default: 64 MiB less the git-tracked tree and 1.5 MiB)")
    args = ap.parse_args(argv)
    if args.max_mib is None:
        tree = tracked_tree_bytes(Path.cwd())
        budget = CALL_BYTES - tree - MARGIN_BYTES
        print(f"tracked working tree {tree / 2**20:.2f} MiB: the pack may take {budget / 2**20:.2f} MiB")
    else:
        budget = int(args.max_mib * 2**20)
    if budget <= 0:
        raise SystemExit(f"no room for a pack (budget {budget} bytes); pass --max-mib")
    pack = build(Path(args.distill), Path(args.out), args.sources, budget)
    print(json.dumps(pack, indent=1))
    print(f"wrote {args.out} ({pack['bytes'] / 2**20:.2f} MiB)")


if __name__ == "__main__":
    main()
