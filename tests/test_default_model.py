"""The bundled default model: loads offline, its embeddings mean something, and streaming does not change them."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from streamret.engine import Engine
from streamret.model.spec import load_model

# (anchor, paraphrase, unrelated): the paraphrase must score higher than the unrelated sentence
TRIPLES = [
    ("The cat sat on the mat.", "A cat was sitting on a rug.", "The stock market fell sharply today."),
    ("How do I create a table in SQL?", "Creating a new database table with an SQL statement.",
     "The wedding took place in a small church by the sea."),
    ("Python lists can be sorted with the sort method.", "Use list.sort() to order the items of a Python list.",
     "Heavy rain flooded the village overnight."),
    ("The server ran out of memory and crashed.", "The machine crashed because its memory was exhausted.",
     "She planted tomatoes and basil in her garden."),
    ("The children played football in the park.", "Kids were kicking a ball around the park.",
     "Compile the kernel with the new configuration options."),
]


@pytest.fixture(scope="module")
def loaded():
    return load_model("default", "cpu")


def embed(loaded, texts: list[str]) -> torch.Tensor:
    model, tok = loaded.model, loaded.tokenizer
    ids = [tok.encode(t) for t in texts]
    flat = torch.tensor([i for x in ids for i in x])
    cu = torch.tensor(np.concatenate([[0], np.cumsum([len(x) for x in ids])]))
    with torch.no_grad():
        _, state = model(flat, mode="chunkwise", state=model.init_state(len(texts), flat.device), cu_seqlens=cu)
        return model.stream_embedding(state)


def test_default_model_loads_offline(loaded, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again = load_model("default", "cpu")
    assert again.model.config.vocab_size == again.tokenizer.vocab_size == 30522
    assert again.tokenizer.encode("hello world") == loaded.tokenizer.encode("hello world")


def test_paraphrases_score_higher_than_unrelated_sentences(loaded):
    e = embed(loaded, [s for t in TRIPLES for s in t]).view(len(TRIPLES), 3, -1)
    torch.testing.assert_close(e.norm(dim=-1), torch.ones(len(TRIPLES), 3))
    close = (e[:, 0] * e[:, 1]).sum(-1)
    far = (e[:, 0] * e[:, 2]).sum(-1)
    assert (close > far).all(), f"paraphrase cosines {close.tolist()} vs unrelated {far.tolist()}"


def test_engine_embedding_of_random_chunks_equals_the_one_shot_one(loaded):
    text = " ".join(s for t in TRIPLES for s in t) * 3
    raw = text.encode("utf-8")
    rng = random.Random(0)
    cuts = sorted(rng.sample(range(1, len(raw)), 12))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)])]
    with Engine(loaded) as engine:
        engine.append("whole", 1, raw, flush=True)
        for seq, piece in enumerate(pieces, 1):
            engine.append("chunks", seq, piece, flush=seq == len(pieces))
        whole, chunks = engine.embedding("whole"), engine.embedding("chunks")
        assert engine.info("chunks").tokens == engine.info("whole").tokens == len(loaded.tokenizer.encode(text))
    np.testing.assert_allclose(chunks, whole, atol=1e-5)
    direct = embed(loaded, [text])[0].numpy()
    np.testing.assert_allclose(whole, direct, atol=1e-4)


def test_random_default_preset_has_the_bundled_models_layout(loaded):
    """`random:default` stands in for the bundled model where its weights cannot go along (bench/gpu_ray.sh)."""
    random_default = load_model("random:default", "cpu")
    assert random_default.model.config == loaded.model.config
    assert random_default.tokenizer.name == "bytes"
