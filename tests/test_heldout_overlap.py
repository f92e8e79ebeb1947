"""bench/heldout_overlap.py: the share of a held-out source's word runs found in each training source."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from streamret.train.prepare import write_source

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import heldout_overlap  # noqa: E402  (bench/heldout_overlap.py)


def _distill(tmp_path: Path, sources: dict[str, tuple[str, list[str]]]) -> Path:
    (tmp_path / "data").mkdir()
    manifest = {"sources": {}}
    for name, (split, texts) in sources.items():
        write_source([(f"{name}/{i}", t) for i, t in enumerate(texts)], tmp_path / "data" / f"{name}.jsonl.xz")
        manifest["sources"][name] = {"split": split}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path


def test_a_copied_half_counts_and_unrelated_text_does_not(tmp_path):
    words = [f"w{i}" for i in range(40)]
    held = " ".join(words)  # 40 words: 29 runs of 12
    copy = " ".join(words[:20])  # its first 20 words: 9 of those runs
    d = _distill(tmp_path, {"manual": ("eval", [held]), "copier": ("train", ["intro " + copy]),
                            "other": ("train", [" ".join(f"x{i}" for i in range(40))])})
    shares = heldout_overlap.overlap(d, n=12)
    assert shares["copier"]["manual"] == pytest.approx(9 / 29)
    assert shares["other"]["manual"] == 0.0
    assert set(shares) == {"copier", "other"}  # held-out sources are not compared with themselves


def test_a_folder_without_held_out_sources_is_refused(tmp_path):
    d = _distill(tmp_path, {"a": ("train", ["some text here"])})
    with pytest.raises(SystemExit, match="no held-out"):
        heldout_overlap.overlap(d)
