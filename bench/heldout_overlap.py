"""Leakage check: how much of the held-out sources' text also occurs in each training source.

A held-out document counts as seen when the student trained on a copy of it, so this reports, for every
training source of a prepared data folder, the share of the held-out sources' n-word runs (shingles,
lower-cased words, default 12) that occur anywhere in it. A share above a few tenths of a percent means
a copy or a close derivative; licence texts and common code idioms give shares of thousandths.

    python bench/heldout_overlap.py --distill .distill --out overlap.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from streamret.train.prepare import read_source, sources_of_split  # noqa: E402


def shingles(text: str, n: int) -> set[int]:
    words = re.findall(r"\w+", text.lower())
    return {hash(" ".join(words[i : i + n])) for i in range(len(words) - n + 1)}


def overlap(distill: Path, n: int = 12) -> dict[str, dict[str, float]]:
    """{training source: {held-out source: share of its shingles found in the training source}}."""
    held = {name: set() for name in sources_of_split(distill, "eval")}
    if not held:
        raise SystemExit(f"{distill}/manifest.json names no held-out (split 'eval') source")
    for name, seen in held.items():
        for _, text in read_source(distill / "data" / f"{name}.jsonl.xz"):
            seen |= shingles(text, n)
    out = {}
    for name in sources_of_split(distill, "train"):
        hits = {h: set() for h in held}
        for _, text in read_source(distill / "data" / f"{name}.jsonl.xz"):
            sh = shingles(text, n)
            for h, seen in held.items():
                hits[h] |= sh & seen
        found = {h: len(hits[h]) / max(1, len(held[h])) for h in held}
        out[name] = found
        print(f"{name:20s} " + "  ".join(f"{h} {v:.4%}" for h, v in found.items()), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--distill", type=Path, default=Path(".distill"), help="folder written by streamret.train.prepare")
    ap.add_argument("--words", type=int, default=12, help="words per shingle")
    ap.add_argument("--out", type=Path, help="write the shares as JSON here")
    a = ap.parse_args()
    shares = overlap(a.distill, a.words)
    worst = max((v, t, h) for t, d in shares.items() for h, v in d.items())
    print(f"largest share: {worst[0]:.4%} of {worst[2]}'s shingles in {worst[1]}")
    if a.out:
        a.out.write_text(json.dumps({"words": a.words, "shares": shares}, indent=1))


if __name__ == "__main__":
    main()
