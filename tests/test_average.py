"""streamret.train.average: the weighted mean of checkpoints of one model, as the recipe's last step writes it."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from helpers_roles import folder_with_document_map

from streamret.model.checkpoint import load_checkpoint, save_checkpoint
from streamret.model.retnet import build_random, get_preset
from streamret.model.spec import load_model
from streamret.model.tokenizer import ByteTokenizer
from streamret.train.average import average_checkpoints
from streamret.train.average import main as average_main


def legs(tmp_path, seeds=(1, 2), dtype=torch.float16):
    folders = []
    for seed in seeds:
        folder = tmp_path / f"leg{seed}"
        save_checkpoint(build_random(get_preset("tiny"), seed).to(dtype), ByteTokenizer(), folder)
        (folder / "training.json").write_text(json.dumps({"step": 100 + seed, "init_training": {"step": 7}}))
        folders.append(folder)
    return folders


def test_mean_is_weighted_per_tensor_in_the_legs_dtype(tmp_path):
    a, b = legs(tmp_path)
    record = average_checkpoints([a, b], [0.25, 0.75], tmp_path / "mean")
    ma, mb, mm = (load_checkpoint(f)[0].state_dict() for f in (a, b, tmp_path / "mean"))
    for name, t in mm.items():
        assert t.dtype == torch.float16
        want = (0.25 * ma[name].float() + 0.75 * mb[name].float()).half()
        assert torch.equal(t, want), name
    loaded = load_model(str(tmp_path / "mean"), "cpu")
    assert record["fingerprint"] == loaded.fingerprint  # the mean's own, not the first leg's
    assert loaded.fingerprint not in (load_model(str(a), "cpu").fingerprint, load_model(str(b), "cpu").fingerprint)
    log = json.loads((tmp_path / "mean" / "training.json").read_text())
    assert log == record and [leg["weight"] for leg in log["legs"]] == [0.25, 0.75]
    assert [leg["training"]["step"] for leg in log["legs"]] == [101, 102]
    assert log["legs"][0]["folder"] == str(a)
    assert log["init_training"] == {"step": 7}  # the start both legs share, once
    assert all("init_training" not in leg["training"] for leg in log["legs"])


def test_legs_of_different_starts_keep_their_own_histories(tmp_path):
    a, b = legs(tmp_path)
    (b / "training.json").write_text(json.dumps({"step": 5, "init_training": {"step": 8}}))
    log = average_checkpoints([a, b], None, tmp_path / "mean")
    assert log["init_training"] is None
    assert [leg["training"]["init_training"] for leg in log["legs"]] == [{"step": 7}, {"step": 8}]


def test_equal_weights_by_default_and_the_order_does_not_matter(tmp_path):
    a, b = legs(tmp_path, dtype=torch.float32)
    average_checkpoints([a, b], None, tmp_path / "ab")
    average_checkpoints([b, a], None, tmp_path / "ba")
    assert load_model(str(tmp_path / "ab"), "cpu").fingerprint == load_model(str(tmp_path / "ba"), "cpu").fingerprint


def test_bad_requests_are_refused_with_the_fix(tmp_path):
    a, b = legs(tmp_path)
    with pytest.raises(ValueError, match="two checkpoints or more"):
        average_checkpoints([a], None, tmp_path / "o")
    with pytest.raises(ValueError, match="one weight per checkpoint"):
        average_checkpoints([a, b], [1.0], tmp_path / "o")
    with pytest.raises(ValueError, match="sum to 1"):
        average_checkpoints([a, b], [0.7, 0.7], tmp_path / "o")
    with pytest.raises(ValueError, match="sum to 1"):
        average_checkpoints([a, b], [1.5, -0.5], tmp_path / "o")
    other = tmp_path / "other"
    save_checkpoint(build_random(replace(get_preset("tiny"), n_layers=1), 3), ByteTokenizer(), other)
    with pytest.raises(ValueError, match="another config"):
        average_checkpoints([a, other], None, tmp_path / "o")
    assert not (tmp_path / "o").exists()
    with pytest.raises(SystemExit):  # the command says it in one line, no traceback
        average_main([str(a), str(b), "--weights", "0.9", "0.9", "--out", str(tmp_path / "o")])


def test_a_document_map_in_the_output_folder_is_named_stale(tmp_path, capsys):
    a, b = legs(tmp_path)
    out, _ = folder_with_document_map(tmp_path / "out")
    average_main([str(a), str(b), "--out", str(out)])
    said = capsys.readouterr().out
    assert "fitted for the weights before these" in said and "document_map" in said
    assert load_model(str(out), "cpu").roles.available == ("query",)  # refused until it is fitted again
