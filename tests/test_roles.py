"""Embedding roles and the document map (streamret/model/document_map.py): the map's math, its file, which weights
it serves, the engines' `role` argument, the recipe that fits it, and the map shipped with the default model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers_roles import folder_with_document_map
from helpers_train import make_distill_dir

from streamret.engine.engine import Engine
from streamret.engine.shards import ShardedEngine
from streamret.errors import FailedPrecondition, InvalidArgument
from streamret.model.checkpoint import save_checkpoint
from streamret.model.document_map import MAP_FILE, DocumentMap, Roles, find_document_map
from streamret.model.retnet import build_random, get_preset
from streamret.model.spec import DEFAULT_MODEL_DIR, load_model
from streamret.model.tokenizer import ByteTokenizer

TEXTS = ["The river runs past the old stone mill and on to the sea. " * 6, "short", "a manual page\n" * 20]


def _train(n=300, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, dim)) * np.linspace(0.2, 3.0, dim) + 1.0).astype(np.float32)


def test_the_map_centres_whitens_and_normalises():
    train = _train()
    m = DocumentMap.fit(train, "fp", power=0.5, shrink=0.0)
    x = train.astype(np.float64) - train.mean(0)
    white = x @ m.matrix.astype(np.float64)
    assert np.allclose(white.T @ white / (len(x) - 1), np.eye(8), atol=1e-4)  # C^-1/2: identity covariance
    docs = _train(5, seed=1)
    want = (docs - m.mean) @ m.matrix
    assert np.allclose(m(docs), want / np.linalg.norm(want, axis=1, keepdims=True), atol=1e-6)
    assert np.allclose(m(docs[0]), m(docs)[0], atol=1e-7)  # one vector or a batch
    assert np.allclose(np.linalg.norm(m(docs), axis=1), 1.0, atol=1e-6)
    full = DocumentMap.fit(train, "fp", power=1.0, shrink=1.0)  # full shrinkage: only centred
    assert np.allclose(full(docs), (docs - full.mean) / np.linalg.norm(docs - full.mean, axis=1, keepdims=True),
                       atol=1e-5)
    with pytest.raises(ValueError, match="dim 4"):
        m(np.ones(4, np.float32))
    with pytest.raises(ValueError, match="more than dim without shrinkage"):
        DocumentMap.fit(train[:8], "fp", shrink=0.0)
    with pytest.raises(ValueError, match="shrink=1.5"):
        DocumentMap.fit(train, "fp", shrink=1.5)


def test_the_map_file_round_trips_and_serves_only_its_weights(tmp_path):
    m = DocumentMap.fit(_train(), "abc123", power=1.0, shrink=0.1)
    m.save(tmp_path)
    back = DocumentMap.read(tmp_path / MAP_FILE)
    assert (back.fingerprint, back.power, back.shrink, back.windows) == ("abc123", 1.0, 0.1, 300)
    assert np.array_equal(back.matrix, m.matrix) and np.array_equal(back.mean, m.mean)
    assert find_document_map(tmp_path, "abc123", 8)[0] is not None
    none, why = find_document_map(tmp_path, "other0000000000000", 8)
    assert none is None and "fitted for the weights abc123" in why
    assert "dim 8" in find_document_map(tmp_path, "abc123", 16)[1]
    assert "has no document_map.safetensors" in find_document_map(tmp_path / "nothing", "abc123", 8)[1]
    (tmp_path / MAP_FILE).write_bytes(b"not a safetensors file")
    none, why = find_document_map(tmp_path, "abc123", 8)
    assert none is None and "could not be read" in why


def test_roles_refuse_unknown_names_and_say_how_to_get_a_map():
    roles = Roles(None, "its folder x has no document_map.safetensors", "x", folder="x")
    assert roles.available == ("query",)
    e = np.ones(8, np.float32)
    assert roles.as_role(e, "query") is e
    with pytest.raises(ValueError, match="role='Document'"):
        roles.check("Document")
    with pytest.raises(LookupError, match="python -m streamret.train.document_map --model x"):
        roles.check("document")
    with pytest.raises(LookupError, match="load a checkpoint folder that has one"):
        Roles(None, "random weights", "random:tiny").check("document")


def test_a_loaded_model_serves_the_document_role_only_with_a_map_for_its_weights(tmp_path):
    folder, m = folder_with_document_map(tmp_path / "m")
    loaded = load_model(str(folder), "cpu")
    assert loaded.roles.available == ("query", "document")
    assert loaded.roles.document_map.fingerprint == loaded.fingerprint == m.fingerprint
    save_checkpoint(build_random(get_preset("tiny"), 7), ByteTokenizer(), folder)  # retrained: the map is stale
    stale = load_model(str(folder), "cpu").roles
    assert stale.available == ("query",)
    with pytest.raises(LookupError, match="fitted for the weights"):
        stale.check("document")
    assert load_model("random:tiny", "cpu").roles.available == ("query",)


def test_engine_document_role_is_the_map_of_the_query_embedding(tmp_path):
    folder, m = folder_with_document_map(tmp_path / "m")
    with Engine.from_model(str(folder), "cpu") as eng:
        eng.open("s")
        eng.append("s", 1, TEXTS[0], flush=True)
        q, d = eng.embedding("s"), eng.embedding("s", "document")
        assert np.allclose(d, m(q), atol=1e-6) and not np.allclose(d, q, atol=1e-2)
        assert eng.embedding("s", "query").tolist() == q.tolist()
        with pytest.raises(InvalidArgument, match="role='doc'"):
            eng.embedding("s", "doc")
        plain = eng.encode(TEXTS + [""])
        docs = eng.encode(TEXTS + [""], role="document")
        assert np.allclose(docs[:3], m(plain[:3]), atol=1e-5)
        assert not docs[3].any()  # an empty text stays the zero vector
        with pytest.raises(InvalidArgument, match="role="):
            eng.encode(TEXTS, role="passage")


def test_engine_without_a_map_refuses_the_document_role_before_waiting():
    with Engine.from_model("random:tiny", "cpu") as eng:
        eng.open("s")
        eng.append("s", 1, "hello")
        with pytest.raises(FailedPrecondition, match="random:tiny has none"):
            eng.embedding("s", "document")
        with pytest.raises(FailedPrecondition, match="role 'document'"):
            eng.encode(["hello"], role="document")
        assert eng.embedding("s").shape == (eng.embed_dim,)


def test_engine_processes_apply_the_role_once_on_the_callers_side(tmp_path):
    folder, m = folder_with_document_map(tmp_path / "m")
    with Engine.from_model(str(folder), "cpu") as one:
        want = one.encode(TEXTS)
    with ShardedEngine(str(folder), "cpu", procs=2) as eng:
        assert eng.roles.available == ("query", "document")
        for i, text in enumerate(TEXTS):
            eng.open(f"s{i}")
            eng.append(f"s{i}", 1, text, flush=True)
            assert np.allclose(eng.embedding(f"s{i}", "document"), m(eng.embedding(f"s{i}")), atol=1e-6)
        assert np.allclose(eng.encode(TEXTS, role="document"), m(want), atol=1e-5)


def test_the_recipe_fits_a_map_for_the_weights_from_training_windows_only(tmp_path, capsys):
    from streamret.train import document_map as recipe

    distill = make_distill_dir(tmp_path / "distill", docs_per_source=4)
    folder, _ = folder_with_document_map(tmp_path / "m", seed=3)
    (folder / MAP_FILE).unlink()
    recipe.main(["--distill", str(distill), "--model", str(folder), "--windows", "40", "--window-tokens", "64",
                 "--shrink", "0.3"])
    made = DocumentMap.read(folder / MAP_FILE)
    loaded = load_model(str(folder), "cpu")
    assert made.fingerprint == loaded.fingerprint and made.shrink == 0.3
    windows = recipe.training_windows(distill, loaded.tokenizer, 40, np.random.default_rng(0), 64)
    assert made.windows == len(windows) == 8  # 4 documents of each of the 2 training sources, none held out
    train = recipe.embed_windows(loaded.model, windows, show_progress=False)
    assert np.allclose(made.mean, train.double().mean(0).float().numpy(), atol=1e-6)
    with pytest.raises(SystemExit):
        recipe.main(["--distill", str(distill), "--model", "random:tiny"])
    assert "random weights have no folder" in capsys.readouterr().err


def test_the_default_model_ships_a_map_fitted_for_its_weights():
    found, why = find_document_map(DEFAULT_MODEL_DIR, load_model("default", "cpu").fingerprint, 384)
    assert found is not None, why
    assert (found.power, found.shrink) == (1.0, 0.1) and found.windows > 1000
    assert np.allclose(found.matrix, found.matrix.T, atol=1e-3 * np.abs(found.matrix).max())
    assert torch.from_numpy(found.matrix).isfinite().all()


def test_exporting_new_weights_over_a_map_warns_that_the_document_role_is_off(tmp_path, capsys):
    from streamret.train import export

    distill = make_distill_dir(tmp_path / "distill", docs_per_source=2)
    folder, _ = folder_with_document_map(tmp_path / "m")
    model = build_random(get_preset("tiny"), 5)  # other weights than the map's (seed 0)
    export.save_shards(model, distill / "teacher" / "tokenizer.json", tmp_path / "shards")
    export.merge_shards(tmp_path / "shards", folder)
    assert "document role is off until it is fitted again" in capsys.readouterr().err
    assert load_model(str(folder), "cpu").roles.available == ("query",)
