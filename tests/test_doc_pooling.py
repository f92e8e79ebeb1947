"""bench/doc_pooling.py: poolings of window embeddings into one vector per document, and best-window scoring."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import doc_pooling  # noqa: E402  (bench/doc_pooling.py)
from quality import averaged  # noqa: E402

from streamret.model.document_map import whitening  # noqa: E402
from streamret.model.tokenizer import ByteTokenizer  # noqa: E402
from streamret.train.document_map import training_windows  # noqa: E402
from streamret.train.prepare import write_source  # noqa: E402


def _windows(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    win = F.normalize(torch.randn(12, 16, generator=g), dim=-1)
    owner = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    return win, owner


def test_mean_is_quality_py_averaging_and_unit_length():
    win, owner = _windows()
    out = doc_pooling.pool("mean", win, owner, 4, win)
    assert torch.allclose(out, averaged(win, owner.tolist(), 4))
    for name in ("centred:0.5", "distinct:2", "whiten:0.5:0.1"):
        assert torch.allclose(doc_pooling.pool(name, win, owner, 4, win).norm(dim=-1), torch.ones(4), atol=1e-6)


def test_centring_moves_documents_away_from_mu():
    win, owner = _windows(1)
    mu = F.normalize(torch.ones(16), dim=-1) * 0.3
    mean = doc_pooling.pool("mean", win, owner, 4, mu[None])
    centred = doc_pooling.pool("centred:1.0", win, owner, 4, mu[None])
    assert ((centred @ mu) < (mean @ mu)).all()


def test_distinct_weighting_drops_a_window_equal_to_mu():
    win, owner = _windows(2)
    mu = win[0].clone()  # document 0's first window is the training mean direction: weight 1 - cos = 0
    out = doc_pooling.pool("distinct:1", win, owner, 4, mu[None])
    w = (1 - win[1:3] @ mu).clamp_min(0)
    assert torch.allclose(out[0], F.normalize((win[1:3] * w[:, None]).sum(0), dim=-1), atol=1e-6)


def test_whitening_makes_the_training_covariance_the_identity_and_full_shrinkage_only_centres():
    g = torch.Generator().manual_seed(4)
    train = F.normalize(torch.randn(400, 8, generator=g) * torch.linspace(0.2, 3.0, 8), dim=-1)
    w = whitening(train, 0.5, 0.0)
    x = (train - train.mean(0)).double()
    assert torch.allclose(w.double() @ (x.T @ x / (len(x) - 1)) @ w.double(), torch.eye(8, dtype=torch.float64),
                          atol=1e-4)
    win, owner = _windows(5)
    win = win[:, :8]
    assert torch.allclose(doc_pooling.pool("whiten:1.0:1.0", win, owner, 4, train),
                          F.normalize(averaged(win, owner.tolist(), 4) - train.mean(0), dim=-1), atol=1e-5)
    assert not torch.allclose(doc_pooling.pool("whiten:1.0:0.0", win, owner, 4, train),
                              doc_pooling.pool("whiten:1.0:1.0", win, owner, 4, train), atol=1e-3)


def test_best_window_scoring_finds_the_document_of_the_query_window():
    win, owner = _windows(3)
    q = win[[4]]  # the middle window of document 1
    hits = doc_pooling.max_window_hits(q, win, owner, 4, torch.tensor([1]), k=1)
    assert hits.tolist() == [True]
    wrong = doc_pooling.max_window_hits(q, win, owner, 4, torch.tensor([2]), k=1)
    assert wrong.tolist() == [False]


def test_unknown_pooling_is_refused():
    win, owner = _windows()
    with pytest.raises(ValueError, match="unknown pooling"):
        doc_pooling.pool("median", win, owner, 4, win)


def _three_splits(folder: Path) -> None:
    (folder / "data").mkdir(parents=True)
    for name in ("train_a", "unseen", "held"):
        write_source([(f"{name}/{i}", f"{name} document {i} " * 40) for i in range(5)],
                     folder / "data" / f"{name}.jsonl.xz")
    (folder / "manifest.json").write_text(
        '{"sources": {"train_a": {"split": "train"}, "unseen": {"split": "val"}, "held": {"split": "eval"}}}')


def test_training_windows_skip_validation_and_held_out_sources(tmp_path):
    _three_splits(tmp_path)
    tok = ByteTokenizer()
    out = training_windows(tmp_path, tok, 3, np.random.default_rng(0))
    assert len(out) == 3
    assert all("train_a" in tok.decode(w) for w in out)
    assert all("held" not in tok.decode(w) and "unseen" not in tok.decode(w) for w in out)


def test_doc_whitening_validates_on_the_val_split_and_never_on_held_out(tmp_path):
    import doc_whitening  # (bench/doc_whitening.py)

    _three_splits(tmp_path / "distill")
    assert doc_whitening.validation_sources(tmp_path / "distill") == ["unseen"]
    folder = doc_whitening.validation_folder(tmp_path / "distill", ["unseen"], tmp_path / "out")
    assert json.loads((folder / "manifest.json").read_text())["sources"] == {"unseen": {"split": "eval"}}
    assert (folder / "data" / "unseen.jsonl.xz").read_bytes() == (
        tmp_path / "distill" / "data" / "unseen.jsonl.xz").read_bytes()
    with pytest.raises(SystemExit, match="held"):
        doc_whitening.validation_folder(tmp_path / "distill", ["held"], tmp_path / "out")
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "manifest.json").write_text('{"sources": {"train_a": {"split": "train"}}}')
    with pytest.raises(SystemExit, match="no validation source"):
        doc_whitening.validation_sources(tmp_path / "bare")


def test_doc_whitening_maps_documents_only_by_training_statistics():
    import doc_whitening  # (bench/doc_whitening.py)

    g = torch.Generator().manual_seed(6)
    train = F.normalize(torch.randn(300, 8, generator=g) * torch.linspace(0.2, 3.0, 8), dim=-1)
    docs = torch.randn(5, 8, generator=g)
    assert torch.allclose(doc_whitening.mapped(docs, train, "none"), F.normalize(docs, dim=-1))
    w = doc_whitening.mapped(docs, train, "whiten:0.5:0.0")
    assert torch.allclose(w, F.normalize((docs - train.mean(0)) @ whitening(train, 0.5, 0.0), dim=-1))
    with pytest.raises(ValueError, match="unknown map"):
        doc_whitening.mapped(docs, train, "whiten:0.5")
