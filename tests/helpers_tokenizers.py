"""Tokenizers that misbehave on purpose, for the tests of what the engine and the server do meanwhile."""

from __future__ import annotations

import threading

from streamret.model.tokenizer import ByteTokenizer


class GatedTokenizer(ByteTokenizer):
    """Bytes, but a batch holding "SLOW" waits for `gate` (a slow tokenizer), and one holding "BAD" gives
    an id past the vocabulary (a tokenizer that does not belong to the model)."""

    def __init__(self):
        self.gate, self.entered = threading.Event(), threading.Event()

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        if any("SLOW" in t for t in texts):
            self.entered.set()
            assert self.gate.wait(30)
        if any("BAD" in t for t in texts):
            return [[10_000] * len(t.encode()) for t in texts]
        return super().encode_batch(texts)
