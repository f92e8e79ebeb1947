"""Tokenizers: one small interface, a byte-level tokenizer, and a loader for HF tokenizer.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol, runtime_checkable


@runtime_checkable
class Tokenizer(Protocol):
    """What the engine needs of a tokenizer.

    `encode` must be concatenative at word starts: encode(a) + encode(b) == encode(a + b) whenever
    a ends with a non-whitespace character and b starts with a space " " (the engine only cuts
    there). Other cuts are not safe for real vocabularies: BPE merges runs of whitespace ("\\n\\n",
    "  "), and Metaspace tokenizers attach newlines and tabs to the following word.
    """

    name: str
    vocab_size: int
    eos_id: int | None

    def encode(self, text: str) -> list[int]: ...

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """encode() of each text; one call, so a native tokenizer can work without the GIL, in parallel."""
        ...

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

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if 0 <= i < 256).decode("utf-8", errors="replace")


class HFTokenizer:
    """A Hugging Face `tokenizers` tokenizer.json (what checkpoints ship), without special tokens.

    Tokenizers of the Llama family prepend a word-start marker to every `encode` call (a
    Prepend("▁") normalizer), so encode(" world") starts with two markers and pieces of a stream
    would not concatenate; Metaspace's prepend_scheme and ByteLevel's add_prefix_space do the same
    for text that does not start with a space. A stream has one start but is encoded in many pieces,
    so these prefixes are switched off (with the decoder's matching Strip): the stream's very first
    word then lacks its marker, every other token is as trained. `source_json` keeps the file as
    shipped, which is what checkpoints save.
    """

    def __init__(self, path: str | Path):
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer.json at {path}")
        self._init(path.read_text(encoding="utf-8"), f"hf:{path.parent.name}")

    @classmethod
    def from_json(cls, source_json: str, name: str = "hf") -> HFTokenizer:
        tok = cls.__new__(cls)
        tok._init(source_json, name)
        return tok

    def _init(self, source_json: str, name: str) -> None:
        from tokenizers import Tokenizer as _Tok

        try:
            spec = json.loads(source_json)
        except json.JSONDecodeError as e:
            raise ValueError(f"tokenizer {name!r} is not valid JSON: {e}") from None
        self.source_json = source_json
        self._tok = _Tok.from_str(json.dumps(without_prefix_space(spec)))
        self.name = name
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        eos = [self._tok.token_to_id(t) for t in ("</s>", "<|endoftext|>", "[SEP]", "<eos>")]
        self.eos_id = next((i for i in eos if i is not None), None)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        # tokenizers runs a batch in Rust threads with the GIL released (TOKENIZERS_PARALLELISM)
        return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        """Token string -> id, added tokens included (e.g. to tell WordPiece word starts from "##" pieces)."""
        return self._tok.get_vocab(with_added_tokens=True)


def without_prefix_space(spec: dict) -> dict:
    """A tokenizer.json dict whose normalizer, pre-tokenizer and decoder add or strip no start-of-text space."""
    spec = json.loads(json.dumps(spec))  # deep copy

    def walk(node: dict | None, children: str) -> dict | None:
        if not node:
            return node
        kind = node.get("type")
        if kind == "Sequence":
            kept = [walk(n, children) for n in node.get(children, [])]
            node[children] = [n for n in kept if n is not None]
            return node
        if kind == "Prepend" or (kind == "Strip" and node.get("content") == " " and node.get("start", 0) > 0):
            return None
        if kind in ("Metaspace", "ByteLevel"):
            if "prepend_scheme" in node:
                node["prepend_scheme"] = "never"
            if "add_prefix_space" in node:
                node["add_prefix_space"] = False
        return node

    spec["normalizer"] = walk(spec.get("normalizer"), "normalizers")
    spec["pre_tokenizer"] = walk(spec.get("pre_tokenizer"), "pretokenizers")
    spec["decoder"] = walk(spec.get("decoder"), "decoders")
    return spec
