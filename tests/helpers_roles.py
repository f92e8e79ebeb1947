"""A checkpoint folder with a document map, for the tests of the `document` embedding role: random `tiny` weights
and a map fitted on random vectors (the tests check that the map is applied, not what it is worth)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamret.model.checkpoint import model_fingerprint, save_checkpoint
from streamret.model.document_map import DocumentMap
from streamret.model.retnet import build_random, get_preset
from streamret.model.tokenizer import ByteTokenizer


def folder_with_document_map(folder: Path, seed: int = 0) -> tuple[Path, DocumentMap]:
    """`folder` holding random:tiny weights (seed) and a document map fitted for them; (folder, the map)."""
    model = build_random(get_preset("tiny"), seed)
    save_checkpoint(model, ByteTokenizer(), folder)
    dim = model.config.out_embed_dim
    rng = np.random.default_rng(seed)
    train = rng.standard_normal((4 * dim, dim)).astype(np.float32) * np.linspace(0.2, 3.0, dim, dtype=np.float32)
    doc_map = DocumentMap.fit(train + 0.5, model_fingerprint(model), power=1.0, shrink=0.1)
    doc_map.save(folder)
    return folder, doc_map
