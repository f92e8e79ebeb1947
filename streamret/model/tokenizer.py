"""Tokenizers: one small interface, a byte-level tokenizer, and a loader for HF tokenizer.json."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable


@runtime_checkable
class Tokenizer(Protocol):
    """What the engine needs of a tokenizer.

    `encode` must be concatenative at whitespace: encode(a) + encode(b) == encode(a + b) whenever
    a ends right before a whitespace character that b starts with (the engine only cuts there).
    """

    name: str
    vocab_size: int
    eos_id: int | None

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


class ByteTokenizer:
    """UTF-8 bytes as tokens 0..255, then specials: 256 pad, 257 bos, 258 eos, 259 unk.

    For tests and for models trained without a tokenizer. Concatenative at every byte.
    """

    name = "bytes"
    vocab_size = 260
    pad_id, bos_id, eos_id = 256, 257, 258

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")


class HFTokenizer:
    """A Hugging Face `tokenizers` tokenizer.json (what checkpoints ship), without special tokens."""

    def __init__(self, path: str | Path):
        from tokenizers import Tokenizer as _Tok

        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer.json at {path}")
        self._tok = _Tok.from_file(str(path))
        self.name = f"hf:{path.parent.name}"
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        eos = [self._tok.token_to_id(t) for t in ("</s>", "<|endoftext|>", "[SEP]", "<eos>")]
        self.eos_id = next((i for i in eos if i is not None), None)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=True)
