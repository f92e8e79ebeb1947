"""Tokenizers: one small interface, a byte-level tokenizer, and a loader for HF tokenizer.json."""

from __future__ import annotations

import itertools
import json
import os
import re
import threading
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Tokenizer(Protocol):
    """What the engine needs of a tokenizer.

    `encode` must be concatenative at word starts: encode(a) + encode(b) == encode(a + b) whenever
    a ends with a non-whitespace character and b starts with a space " " (the engine only cuts
    there). Other cuts are not safe for real vocabularies: BPE merges runs of whitespace ("\\n\\n",
    "  "), and Metaspace tokenizers attach newlines and tabs to the following word.

    A tokenizer may also have `encode_pieces(items: list[list[str]]) -> tuple[ids, ends]`, the
    engine's call (through `encode_pieces(tokenizer, items)`, which falls back to `encode_batch` when
    it is missing): for items of text pieces, the ids of every piece of every item one after the other
    (int64 [n]) and where each piece's ids end in them (int64 [pieces]), equal to `encode_batch` of
    every piece. The items are a hint: a native tokenizer may take one task per item.
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

    def encode_pieces(self, items: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        """`encode_pieces` (see `Tokenizer`): one text per item, as bytes concatenate at every cut; through
        encode_batch, so that a subclass that overrides it sees every call."""
        ids = self.encode_batch(["".join(pieces) for pieces in items if pieces])
        pieces = [p for ps in items for p in ps]
        if all(map(str.isascii, pieces)):
            lens = np.fromiter(map(len, pieces), np.int64, len(pieces))
        else:
            lens = np.fromiter(map(len, map(str.encode, pieces)), np.int64, len(pieces))
        return np.fromiter(itertools.chain.from_iterable(ids), np.int64), np.cumsum(lens)

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
        self._mark = self._piece_mark()
        self._prenormalized = _Prenormalized.of(spec, self._tok) if self._mark is not None else None

    def _piece_mark(self) -> tuple[str, int] | None:
        """A special token that `encode_pieces` can put after each piece to find where the pieces end: one whose
        text, as a word of its own, comes back as its id alone, and not the model's unknown token (which text
        may give). None: there is none, or this version of tokenizers has no encode_batch_fast."""
        if not hasattr(self._tok, "encode_batch_fast") or not hasattr(self._tok, "get_added_tokens_decoder"):
            return None
        unknown = getattr(self._tok.model, "unk_token", None)
        for i, t in sorted(self._tok.get_added_tokens_decoder().items()):
            if t.special and t.content and t.content != unknown and self._tok.encode_batch_fast(
                    [[t.content]], is_pretokenized=True, add_special_tokens=False)[0].ids == [i]:
                return t.content, i
        return None

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        # tokenizers runs a batch in Rust threads with the GIL released (TOKENIZERS_PARALLELISM)
        return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def encode_pieces(self, items: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        """`encode_pieces` (see `Tokenizer`): each item is one pre-tokenized input of `tokenizers`, whose
        "words" are its pieces. tokenizers encodes each word of such an input as its own text (normalizer,
        pre-tokenizer, model), exactly as encode_batch does each piece, and merges them: the same ids, with
        Python objects per item instead of per piece. Where the pieces end: a special token put after each
        piece as a word of its own marks it (`_marked`), else tokenizers numbers each token with its word
        (`word_ids`, which costs it character offsets and token strings). A truncation or padding setting
        would apply to the merged input instead of each piece, so such a tokenizer is encoded piece by piece."""
        if self._tok.truncation is not None or self._tok.padding is not None:
            return encode_pieces_one_by_one(self, items)
        full = [pieces for pieces in items if pieces]  # a pre-tokenized input of no words is refused
        if self._prenormalized is not None:
            found = self._prenormalized.encode(full, self._marked)
            if found is not None:
                return found
        marked = self._marked(full) if self._mark is not None else None
        if marked is not None:
            return marked
        encoded = self._tok.encode_batch(full, is_pretokenized=True, add_special_tokens=False)
        ids = np.fromiter(itertools.chain.from_iterable(e.ids for e in encoded), np.int64)
        words = [e.word_ids for e in encoded]
        try:
            piece = np.fromiter(itertools.chain.from_iterable(words), np.int64, len(ids))
        except TypeError:  # a token of no word (None; none is known to come without special tokens)
            return encode_pieces_one_by_one(self, items)
        # each token's piece among all the items' pieces: its word plus the pieces of the inputs before it
        n_pieces = np.fromiter(map(len, full), np.int64, len(full))
        piece += np.repeat(np.cumsum(n_pieces) - n_pieces, np.fromiter(map(len, words), np.int64, len(words)))
        return ids, np.searchsorted(piece, np.arange(n_pieces.sum()), side="right").astype(np.int64, copy=False)

    def _marked(self, items: list[list[str]], tok=None) -> tuple[np.ndarray, np.ndarray] | None:
        """`encode_pieces` of items with pieces, the mark after each piece: every mark comes back as its id alone
        and the pieces' ids are as without it (each word is encoded alone), so the k-th mark id ends piece k,
        unless a piece gives that id itself (its text holds the mark's): None then. tok: the tokenizers object
        to use (default: this one's; `_Prenormalized` passes its twin without a normalizer)."""
        mark, mark_id = self._mark
        tok = self._tok if tok is None else tok
        inputs = []
        for pieces in items:
            words = [mark] * (2 * len(pieces))
            words[::2] = pieces
            inputs.append(words)
        encoded = tok.encode_batch_fast(inputs, is_pretokenized=True, add_special_tokens=False)
        ids = np.fromiter(itertools.chain.from_iterable(e.ids for e in encoded), np.int64)
        marks = np.flatnonzero(ids == mark_id)
        if len(marks) != sum(map(len, items)):
            return None
        kept = np.ones(len(ids), dtype=bool)
        kept[marks] = False
        return ids[kept], marks - np.arange(len(marks))

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        """Token string -> id, added tokens included (e.g. to tell WordPiece word starts from "##" pieces)."""
        return self._tok.get_vocab(with_added_tokens=True)


# printable ASCII, tab, newline, carriage return: text that common normalizers only lowercase (or leave alone)
_NOT_PLAIN = re.compile(r"[^\t\n\r\x20-\x7e]")
_CONTROLS = tuple(chr(c) for c in [*range(0x20), 0x7F] if chr(c) not in "\t\n\r")  # ASCII that is not plain
_PLAIN_PROBE = "\t\n\r" + "".join(map(chr, range(0x20, 0x7F)))
_SPACES = str.maketrans("\t\n\r", "   ")


def _plain(text: str) -> bool:
    """Whether `_NOT_PLAIN` finds nothing in text: an ASCII check and a substring search a control character, at
    C speed (the pattern's class is tried at every character, about ten times the time)."""
    return text.isascii() and not any(c in text for c in _CONTROLS)


# pre-tokenizers that cut words at every whitespace character and drop it
_DROPS_WHITESPACE = frozenset({"BertPreTokenizer", "Whitespace", "WhitespaceSplit"})


def _same(text: str) -> str:
    return text


def _spaces(text: str) -> str:
    return text.translate(_SPACES)


def _lower_spaces(text: str) -> str:
    return text.lower().translate(_SPACES)


# normalizers that map each printable ASCII character on its own (so a probe of each character says what they do)
_PER_CHAR_ON_ASCII = frozenset({"BertNormalizer", "Lowercase", "NFD", "NFC", "NFKD", "NFKC", "StripAccents"})


def _maps_ascii_chars_alone(node: dict | None) -> bool:
    if not node:
        return False
    if node.get("type") == "Sequence":
        return all(map(_maps_ascii_chars_alone, node.get("normalizers") or [None]))
    return node.get("type") in _PER_CHAR_ON_ASCII


class _IdTable:
    """A dict cache of `_WordCache` (parts, long words): text -> its ids (a tuple: the garbage collector need not
    walk it), and the ids it holds in all, by which it is bounded."""

    __slots__ = ("ids", "size")

    def __init__(self) -> None:
        self.ids: dict[str, tuple[int, ...]] = {}
        self.size = 0  # ids held, all entries together


# whitespace as str.split sees it, among ASCII bytes; ASCII letters and digits (runs of which are one PART)
_WHITESPACE = np.array([chr(c).isspace() for c in range(256)]) & (np.arange(256) < 128)
_ALNUM = np.array([chr(c).isascii() and chr(c).isalnum() for c in range(256)])
_LANES = 4  # a key: a word's bytes zero-padded to 32, as four uint64
# _LANE_MASKS[n]: per lane, the bytes of a word of n characters (little-endian: the low bytes first)
_LANE_MASKS = np.array([[(1 << (8 * min(max(n - 8 * lane, 0), 8))) - 1 for lane in range(_LANES)]
                        for n in range(8 * _LANES + 1)], dtype=np.uint64)
_LANE_OFFSETS = 8 * np.arange(_LANES)
_MIX = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93], dtype=np.uint64)


def _word_spans(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each whitespace-free run of the ASCII bytes b starts and ends (as `str.split` cuts)."""
    word = ~_WHITESPACE.take(b)
    n = len(word)
    change = np.empty(n + 1, dtype=bool)  # at i: word[i - 1] != word[i], with no word before 0 or after n - 1
    change[0], change[n] = (word[0], word[-1]) if n else (False, False)
    np.not_equal(word[1:], word[:-1], out=change[1:n])  # (half the time of a diff of the padded int8 view)
    edges = np.flatnonzero(change)
    return edges[::2], edges[1::2]


def _word_keys(b: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """[words, 4] uint64: each word's bytes (at most 32, all nonzero) zero-padded to 32, read as four
    little-endian uint64 from an unaligned view of b (so no word costs more than four gathers)."""
    padded = np.zeros(len(b) + 8 * _LANES, dtype=np.uint8)
    padded[:len(b)] = b
    at = np.ndarray(shape=(len(b) + 8 * _LANES - 7,), dtype="<u8", buffer=padded, strides=(1,))
    return at.take(starts[:, None] + _LANE_OFFSETS) & _LANE_MASKS.take(lens, axis=0)


class _WordTable:
    """The words cache of `_WordCache`: whitespace-free words of printable ASCII, at most 32 characters, -> their
    ids, in numpy arrays so that a call looks up all its words at once. Open addressing with linear probing on
    the word's own bytes (`_word_keys`: exact keys, nothing to collide), at most half the slots used; an entry's
    ids at ids[start[slot]:][:count[slot]]. A slot is empty while its first lane is 0 (a word's first byte is
    not). Entries are written under `_WordCache`'s lock, the first lane last, so a reader in another thread sees
    an entry whole or not at all."""

    __slots__ = ("keys", "start", "count", "ids", "words", "size", "max_words")

    def __init__(self, max_words: int) -> None:
        slots = 1 << max(4, (2 * max_words - 1).bit_length())
        self.keys = np.zeros((slots, _LANES), dtype=np.uint64)
        self.start = np.zeros(slots, dtype=np.int64)
        self.count = np.zeros(slots, dtype=np.int64)
        self.ids = np.zeros(4 * max_words, dtype=np.int64)
        self.words = 0  # entries held
        self.size = 0  # ids held, all entries together
        self.max_words = max_words

    def _home(self, keys: np.ndarray) -> np.ndarray:
        h = (keys * _MIX).view(np.uint64)
        h = h[:, 0] ^ h[:, 1] ^ h[:, 2] ^ h[:, 3]
        h ^= h >> np.uint64(29)
        h *= _MIX[1]
        return (h >> np.uint64(64 - (len(self.keys).bit_length() - 1))).astype(np.int64)

    def find(self, keys: np.ndarray) -> np.ndarray:
        """Each key's slot, or -1 where the table does not hold it."""
        mask = len(self.keys) - 1
        found = np.full(len(keys), -1, dtype=np.int64)
        slot = self._home(keys)
        pending = np.arange(len(keys))
        while len(pending):  # (take: several times faster than fancy indexing of rows)
            at = self.keys.take(slot, axis=0)
            d = at ^ keys
            same = (d[:, 0] | d[:, 1] | d[:, 2] | d[:, 3]) == 0
            found[pending[same]] = slot[same]
            go_on = ~same & (at[:, 0] != 0)
            pending, slot, keys = pending[go_on], (slot[go_on] + 1) & mask, keys[go_on]
        return found

    def fits(self, words: int, ids: int) -> bool:
        return self.words + words <= self.max_words and self.size + ids <= len(self.ids)

    def add(self, keys: np.ndarray, counts: np.ndarray, flat: np.ndarray) -> None:
        """Entries for keys the table does not hold (distinct; `fits` checked), their ids one after the other."""
        self.ids[self.size:self.size + len(flat)] = flat
        starts = self.size + np.cumsum(counts) - counts
        mask = len(self.keys) - 1
        slot = self._home(keys)
        pending = np.arange(len(keys))
        while len(pending):  # each round the first key to reach an empty slot takes it; the others probe on
            free = self.keys[slot, 0] == 0
            taken_slots, first = np.unique(slot[free], return_index=True)
            won = pending[free][first]
            self.start[taken_slots], self.count[taken_slots] = starts[won], counts[won]
            self.keys[taken_slots, 1:] = keys[won, 1:]
            self.keys[taken_slots, 0] = keys[won, 0]
            lost = np.ones(len(pending), dtype=bool)
            lost[np.flatnonzero(free)[first]] = False
            pending, slot = pending[lost], (slot[lost] + 1) & mask
        self.words += len(keys)
        self.size += len(flat)


class _WordPiece:
    """A tokenizer.json's WordPiece model in Python, for the word cache's new parts (each a word of the
    pre-tokenizer: no normalizer to apply, no added token in it; the cache's callers see to both): the longest
    prefix of the word in the vocabulary, then the longest continuation (the prefix "##" and the text) from where
    it ends, and so on; the unknown token alone for a word longer than max_input_chars_per_word or one that no
    tokens cover. The algorithm of `tokenizers`' WordPiece, for one word a Python call instead of a native one
    with its per-input objects: about 4x less for the 8,000 new parts of 2 MB of manual pages."""

    __slots__ = ("vocab", "continued", "unk", "max_chars", "longest")

    def __init__(self, vocab: dict[str, int], prefix: str, unk: int, max_chars: int):
        self.vocab, self.unk, self.max_chars = vocab, unk, max_chars
        self.continued = {t[len(prefix):]: i for t, i in vocab.items() if t.startswith(prefix)}
        # no token is longer: the search for the longest match starts there, not at the word's end (a hex string
        # of 40 characters tries at most 18 prefixes a token with the default vocabulary, not up to 40)
        self.longest = max(map(len, [*vocab, *self.continued]), default=0)

    @classmethod
    def of(cls, spec: dict) -> _WordPiece | None:
        """For a tokenizer.json whose model is WordPiece with its unknown token in the vocabulary; else None."""
        model = spec.get("model") or {}
        vocab, unk = model.get("vocab"), model.get("unk_token")
        if model.get("type") != "WordPiece" or not isinstance(vocab, dict) or unk not in vocab:
            return None
        prefix, max_chars = model.get("continuing_subword_prefix", "##"), model.get("max_input_chars_per_word", 100)
        if not isinstance(prefix, str) or not isinstance(max_chars, int):
            return None
        return cls(vocab, prefix, vocab[unk], max_chars)

    def __call__(self, word: str) -> tuple[int, ...]:
        whole = self.vocab.get(word)
        if whole is not None:
            return (whole,)
        if len(word) > self.max_chars:
            return (self.unk,)
        out, start, n, table, longest = [], 0, len(word), self.vocab, self.longest
        while start < n:
            end = min(n, start + longest)
            while end > start:
                found = table.get(word[start:end])
                if found is not None:
                    break
                end -= 1
            else:
                return (self.unk,)
            out.append(found)
            start, table = end, self.continued
        return tuple(out)


class _WordCache:
    """Each word's ids, for a pre-tokenizer that cuts text at whitespace first and then each whitespace-free word
    on its own (BertPreTokenizer: runs of letters and digits, and every other character alone): `tokenizers`
    encodes such a word the same wherever it stands, so a piece's ids are its words' ids one after the other.
    A call joins its pieces with newlines, finds the words' spans and looks them all up in a numpy table
    (`_WordTable`), and gathers their ids: no Python work per word or piece once the words are known
    (bench/tokenizer.py). A word not seen yet ("end.", "(see") is cut as the pre-tokenizer cuts it (PART: "end",
    ".") and made of its parts' ids, from a second cache (a dict); parts not seen yet are made by the model's
    WordPiece in Python (`_WordPiece`) or, without one, by the twin in one call; the new words of a call are
    told apart, cut and given their ids with array work (`_distinct`, `_encode_new`). Only for printable ASCII
    pieces, where whitespace is exactly what the pre-tokenizer cuts at, and PART finds its parts.

    A word longer than the table's keys (`max_word_chars`, at most 32: "copy_resolved_framework_into_bundle", a
    quoted path) is kept in a third cache, a dict, up to `max_long_chars`: in manual pages half of the calls of
    4 KB held one, and each then took the path for new words.

    Bounds, so that arbitrary text (hashes, base64, random words) cannot grow a process without end: a part
    longer than `max_word_chars`, or a word longer than `max_long_chars`, is encoded each time and never kept (a
    token covers at least one character, so a kept entry holds at most that many ids); the word table and the
    parts cache start over once they would hold more than `max_words` entries or `4 * max_words` ids, the long
    words' cache past `max_words // 8` entries or `max_words` ids (the word table's arrays take 16 MiB at the
    default `max_words`, allocated as the slots are first written; 8 MB of manual pages fill the caches to 75 k
    words: bench/tokenizer.py --text-mb 8)."""

    PART = re.compile(r"[A-Za-z0-9]+|[^\sA-Za-z0-9]")
    PROBE = [_PLAIN_PROBE, " Stream's state-retention (x2y), 3.14 e.g. a_b--c\t[d]\n", "don't.  \r\n#!/bin/sh",
             "x" * 120 + " tail", "C++ -- ~`|{}"]

    def __init__(self, twin, max_words: int = 1 << 17, max_word_chars: int = 32, max_long_chars: int = 128,
                 wordpiece: _WordPiece | None = None):
        """wordpiece: the twin's model in Python, for new parts (None: the twin makes them)."""
        if not 1 <= max_word_chars <= 8 * _LANES:
            raise ValueError(f"max_word_chars={max_word_chars}: the word table keeps words of 1 to {8 * _LANES}")
        self.twin, self.max_words, self.max_word_chars, self.wordpiece = twin, max_words, max_word_chars, wordpiece
        self.max_long_chars = max_long_chars
        self._words = _WordTable(max_words)  # whitespace-free word -> ids
        self._parts = _IdTable()  # the pre-tokenizer's word (PART) -> ids
        self._long = _IdTable()  # whitespace-free words too long for the table's keys -> ids
        self._lock = threading.Lock()  # one thread at a time adds words (the tokenize stage's threads share a cache)

    @classmethod
    def of(cls, spec: dict, twin) -> _WordCache | None:
        """A cache for `twin` (no normalizer) when its pre-tokenizer is BertPreTokenizer and the cache gives the
        twin's own ids on a probe of printable ASCII; None otherwise, or when the environment sets
        STREAMRET_WORD_CACHE=0 (every piece then goes to the native call, as before the cache: for comparisons).
        New parts are made by the model in Python (`_WordPiece`) where it has one that gives the probe's ids, else
        by the twin."""
        if os.environ.get("STREAMRET_WORD_CACHE", "1") == "0":
            return None
        if (spec.get("pre_tokenizer") or {}).get("type") != "BertPreTokenizer":
            return None
        want = [e.ids for e in twin.encode_batch(cls.PROBE, add_special_tokens=False)]
        for wordpiece in dict.fromkeys([_WordPiece.of(spec), None]):  # the Python WordPiece first, then the twin
            cache = cls(twin, wordpiece=wordpiece)
            ids, ends = cache.encode(cls.PROBE)
            if (ids.tolist() == [i for w in want for i in w]
                    and ends.tolist() == np.cumsum(list(map(len, want))).tolist()):
                return cache  # (holding the probe's words, with their right ids)
        return None

    def clear(self) -> None:
        """Every cache empty again (a bench's first pass over text)."""
        with self._lock:
            self._words, self._parts, self._long = _WordTable(self.max_words), _IdTable(), _IdTable()

    @property
    def words_held(self) -> int:
        """Whole words held (the table's and the long words')."""
        return self._words.words + len(self._long.ids)

    def encode(self, pieces: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The ids of normalized printable ASCII pieces one after the other, and where each piece's ids end."""
        return self.encode_text("\n".join(pieces), pieces)

    def encode_text(self, text: str, pieces: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """`encode` of pieces given joined by newlines (text) and as they are (only their lengths are read: text
        may be their normalized form, of the same lengths)."""
        if not pieces:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        b = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
        starts, ends = _word_spans(b)
        counts, ids = self._ids(text, b, starts, ends)
        token_ends = np.concatenate([[0], np.cumsum(counts)])
        piece_ends = np.cumsum(np.fromiter(map(len, pieces), np.int64, len(pieces)) + 1) - 1  # its newline
        return ids, token_ends[np.searchsorted(starts, piece_ends)]

    def _ids(self, text: str, b: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each word's number of ids, and all the words' ids one after the other."""
        table = self._words  # another thread may start the cache over: this call keeps the one it began with
        lens = ends - starts
        found = np.full(len(starts), -1, dtype=np.int64)
        short = np.flatnonzero(lens <= self.max_word_chars)
        keys = _word_keys(b, starts[short], lens[short])
        found[short] = table.find(keys)
        missed = np.flatnonzero(found < 0)
        counts, src = table.count.take(found), table.start.take(found)  # (a missed word's two fixed below)
        if not len(missed):
            return counts, table.ids.take(_spans(src, counts))
        first, which, new_keys = _distinct(missed, lens[missed] <= self.max_word_chars, keys, short, text, starts,
                                           ends)
        new = [text[a:e] for a, e in zip(starts[first].tolist(), ends[first].tolist())]
        new_counts, new_ids = self._new_words(new, new_keys)
        counts[missed] = new_counts[which]
        src[missed] = (np.cumsum(new_counts) - new_counts)[which]
        # the missed words' ids from this call's own flat array, the others' from the table's
        at = _spans(src, counts)
        from_new = np.repeat(found < 0, counts)
        ids = np.empty(len(at), dtype=np.int64)
        ids[from_new] = new_ids[at[from_new]]
        ids[~from_new] = table.ids[at[~from_new]]
        return counts, ids

    def _new_words(self, words: list[str], keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each of words' number of ids and all their ids one after the other, for distinct words the table does
        not hold: first those of up to max_word_chars (keys: theirs), which then go into the table, then longer
        ones, which go into the long words' dict (up to max_long_chars) unless it holds them already."""
        n_short = len(keys)
        longer = words[n_short:]
        seen = self._long.ids
        known = {w: seen[w] for w in longer if w in seen}
        to_make = words[:n_short] + [w for w in longer if w not in known] if known else words
        counts, flat, short_ids = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), 0
        if to_make:
            with self._lock:
                counts, flat = self._encode_new(to_make)
                short_ids = int(counts[:n_short].sum())  # (the short words come first)
                self._add(keys, counts[:n_short], flat[:short_ids])
                if len(to_make) > n_short:
                    ends = np.cumsum(counts[n_short:]) + short_ids
                    made = {w: tuple(flat[e - n:e].tolist())
                            for w, e, n in zip(to_make[n_short:], ends.tolist(), counts[n_short:].tolist())}
                    self._long = self._keep(self._long, made, self.max_long_chars, self.max_words // 8, self.max_words)
                    known.update(made)
        if len(to_make) == len(words):
            return counts, flat
        # long words seen before among them: theirs from the dict, after the short words' made here
        longer_ids = [known[w] for w in longer]
        longer_counts = np.fromiter(map(len, longer_ids), np.int64, len(longer))
        return (np.concatenate([counts[:n_short], longer_counts]),
                np.concatenate([flat[:short_ids], np.fromiter(itertools.chain.from_iterable(longer_ids), np.int64,
                                                              int(longer_counts.sum()))]))

    def _add(self, keys: np.ndarray, counts: np.ndarray, flat: np.ndarray) -> None:
        """New words (their keys, numbers of ids and ids one after the other) into the word table, unless another
        thread added them meanwhile; the table starts over when they would take it past a bound, and keeps what fits
        of them then."""
        table = self._words
        absent = table.find(keys) < 0
        if not absent.all():
            keys, counts, flat = keys[absent], counts[absent], flat[np.repeat(absent, counts)]
        if not table.fits(len(keys), int(counts.sum())):
            self._words = table = _WordTable(self.max_words)
            fit = int(min(np.searchsorted(np.cumsum(counts), len(table.ids), side="right"), table.max_words))
            keys, counts = keys[:fit], counts[:fit]
            flat = flat[:int(counts.sum())]
        if len(keys):
            table.add(keys, counts, flat)

    def _encode_new(self, words: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Each whitespace-free word's number of ids and all their ids one after the other: a word's ids are its
        parts' (PART) one after the other, the parts of all the words found by one search, and each part not seen
        yet made by the tokenizer's WordPiece in Python where `_WordPiece.of` found one (a few times faster than a
        native call per part), else by the twin in one call."""
        joined = "\n".join(words)
        parts = self.PART.findall(joined)  # every word's parts, word after word
        b = np.frombuffer(joined.encode("ascii"), dtype=np.uint8)
        alnum = _ALNUM.take(b)
        starts_part = ~_WHITESPACE.take(b) & ~(alnum & np.concatenate([[False], alnum[:-1]]))
        per_part = np.concatenate([[0], np.cumsum(starts_part)])  # parts begun before each place
        word_lens = np.fromiter(map(len, words), np.int64, len(words))
        word_at = np.cumsum(word_lens + 1) - word_lens - 1  # where each word starts in joined
        cached = self._parts.ids
        distinct = dict.fromkeys(parts)
        known = {p: cached[p] for p in distinct if p in cached}
        new = [p for p in distinct if p not in known]
        if new:
            if self.wordpiece is not None:
                fresh = {p: self.wordpiece(p) for p in new}
            else:
                encoded = self.twin.encode_batch_fast([[p] for p in new], is_pretokenized=True,
                                                      add_special_tokens=False)
                fresh = {p: tuple(e.ids) for p, e in zip(new, encoded)}
            self._parts = self._keep(self._parts, fresh, self.max_word_chars, self.max_words, 4 * self.max_words)
            known.update(fresh)
        part_ids = list(map(known.__getitem__, parts))  # (a part's ids may be ())
        part_counts = np.concatenate([[0], np.cumsum(np.fromiter(map(len, part_ids), np.int64, len(parts)))])
        flat = np.fromiter(itertools.chain.from_iterable(part_ids), np.int64, int(part_counts[-1]))
        first_part, end_part = per_part[word_at], per_part[word_at + word_lens]
        return part_counts[end_part] - part_counts[first_part], flat

    @staticmethod
    def _keep(table: _IdTable, fresh: dict[str, tuple[int, ...]], max_chars: int, max_entries: int,
              max_ids: int) -> _IdTable:
        """A dict cache with fresh entries of at most max_chars characters added, or, when they would take it past
        max_entries entries or max_ids ids, a new one holding as many of them as fit."""
        kept = {w: v for w, v in fresh.items() if len(w) <= max_chars}
        size = sum(map(len, kept.values()))
        if len(table.ids) + len(kept) <= max_entries and table.size + size <= max_ids:
            table.ids.update(kept)
            table.size += size
            return table
        table = _IdTable()
        for w, v in kept.items():
            if len(table.ids) == max_entries or table.size + len(v) > max_ids:
                break
            table.ids[w] = v
            table.size += len(v)
        return table


def _distinct(missed: np.ndarray, short: np.ndarray, keys: np.ndarray, keyed: np.ndarray, text: str,
              starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Of the words missed (indices into starts and ends, the words' spans in text; short: which of them have
    keys, keys[j] being word keyed[j]'s): the first place of each distinct one, those with keys first, per missed
    word the number of its distinct word in that order, and the keys of the distinct ones that have them. Words
    with keys are told apart by their keys (array work), the others by their text."""
    which = np.empty(len(missed), dtype=np.int64)
    s, rest = np.flatnonzero(short), np.flatnonzero(~short)
    first, distinct_keys = np.zeros(0, dtype=np.int64), keys[:0]
    if len(s):
        rows = keys[np.searchsorted(keyed, missed[s])]
        _, at, inverse = np.unique(np.ascontiguousarray(rows).view(np.dtype((np.void, 8 * _LANES))).ravel(),
                                   return_index=True, return_inverse=True)
        which[s] = inverse.ravel()
        first, distinct_keys = missed[s[at]], rows[at]
    if len(rest):
        number: dict[str, int] = {}
        seen = np.fromiter((number.setdefault(text[a:e], len(number)) for a, e in zip(
            starts[missed[rest]].tolist(), ends[missed[rest]].tolist())), np.int64, len(rest))
        which[rest] = len(first) + seen
        first = np.concatenate([first, missed[rest[np.unique(seen, return_index=True)[1]]]])
    return first, which, distinct_keys


def _spans(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """starts[k], starts[k] + 1, ... counts[k] numbers from each start, one span after the other."""
    ends = np.cumsum(counts)
    return np.repeat(starts - (ends - counts), counts) + np.arange(int(ends[-1]) if len(ends) else 0)


class _Prenormalized:
    """The tokenizer's normalizer applied before `tokenizers` sees the text, by Python's `str.lower` where that
    is all it does: `tokenizers` normalizes each word through an alignment-tracking string, about 40% of its
    time on English text (bench/tokenizer.py; bench/RESULTS.md, "End to end on the H200, session 5"). A twin of
    the tokenizer without a normalizer then encodes the normalized pieces: the same ids, since normalizing is its
    first step.

    Pieces of printable ASCII (most English text) are normalized by the Python mapping that equals the
    normalizer on every such character (found when loading: lowercase or not, whitespace to spaces or not);
    any other piece by the normalizer itself (`normalize_str`). Added tokens ([CLS], <s>, ...) are matched on
    the text before normalizing, so an item where one may occur is encoded by the tokenizer as is."""

    def __init__(self, twin, normalize, plain, added: re.Pattern | None, words: _WordCache | None = None):
        self.twin, self.normalize, self.plain, self.added = twin, normalize, plain, added
        self.words = words  # printable ASCII pieces through a cache of each word's ids (None: through the twin)

    @classmethod
    def of(cls, spec: dict, tok) -> _Prenormalized | None:
        """None when the tokenizer has no normalizer (nothing to gain), a normalizer that does more than map
        characters one by one (Replace, Prepend, Strip: a probe of single characters would not tell what it
        does) or one whose effect on printable ASCII is not one of the mappings here, an added token matched
        on normalized text (`normalized`, as `add_tokens` makes them: the twin would not see the text it is
        matched on), or when this tokenizers version lacks normalize_str."""
        from tokenizers import Tokenizer as _Tok

        normalizer = getattr(tok, "normalizer", None)
        if (normalizer is None or not hasattr(normalizer, "normalize_str") or not hasattr(tok, "encode_batch_fast")
                or not _maps_ascii_chars_alone(spec.get("normalizer"))):
            return None
        twin_spec = without_prefix_space(spec)
        twin_spec["normalizer"] = None
        twin = _Tok.from_str(json.dumps(twin_spec))
        # the pre-tokenizer splits words at any whitespace and drops it: tabs need not become spaces first
        drops_whitespace = (spec.get("pre_tokenizer") or {}).get("type") in _DROPS_WHITESPACE

        def same(a: str, b: str) -> bool:
            return a.translate(_SPACES) == b.translate(_SPACES) if drops_whitespace else a == b

        want = normalizer.normalize_str(_PLAIN_PROBE)
        plain = next((f for f in (str.lower, _same, _lower_spaces, _spaces) if same(f(_PLAIN_PROBE), want)), None)
        if plain is None:
            return None
        tokens = [t for t in tok.get_added_tokens_decoder().values() if t.content]
        if any(t.normalized for t in tokens):  # matched on normalized text (the twin has none): not found here
            return None
        contents = [t.content for t in tokens]
        added = re.compile("|".join(map(re.escape, contents)), re.IGNORECASE) if contents else None
        # (the word cache searches pieces joined by newlines for added tokens: none may hold one)
        words = None if any("\n" in c for c in contents) else _WordCache.of(spec, twin)
        return cls(twin, normalizer.normalize_str, plain, added, words)

    def encode(self, items: list[list[str]], marked) -> tuple[np.ndarray, np.ndarray] | None:
        """`HFTokenizer._marked` of the items through the twin (printable ASCII pieces through the word cache,
        where there is one); None when an item may hold an added token (the caller then encodes as it would
        without this class)."""
        if self.words is not None:
            return self._through_words(items, marked)
        normal = []
        for pieces in items:
            out = []
            for piece in pieces:
                if self.added is not None and self.added.search(piece):
                    return None
                if _NOT_PLAIN.search(piece) is None:
                    out.append(self.plain(piece))
                    continue
                text = self.normalize(piece)
                if self.added is not None and self.added.search(text):
                    return None
                out.append(text)
            normal.append(out)
        return marked(normal, self.twin)


    def _through_words(self, items: list[list[str]], marked) -> tuple[np.ndarray, np.ndarray] | None:
        """`encode` with the word cache: printable ASCII pieces normalized by `plain` and looked up word by word,
        the other pieces normalized by the normalizer and encoded by the twin in one `marked` call. The searches
        for added tokens and other text run once over all the pieces joined by newlines (no added token's text
        holds one, `of` checks)."""
        pieces = [p for ps in items for p in ps]
        joined = "\n".join(pieces)
        if self.added is not None and self.added.search(joined):
            return None
        if _plain(joined):  # most calls
            return self.words.encode_text(self.plain(joined), pieces)
        hits = [m.start() for m in _NOT_PLAIN.finditer(joined)]
        lens = np.fromiter(map(len, pieces), np.int64, len(pieces))
        is_other = np.zeros(len(pieces), dtype=bool)  # the pieces that hold a hit (not a newline between two)
        is_other[np.searchsorted(np.cumsum(lens + 1) - lens - 1, hits, side="right") - 1] = True
        other = np.flatnonzero(is_other)
        texts = [self.normalize(pieces[k]) for k in other.tolist()]
        if self.added is not None and any(map(self.added.search, texts)):
            return None
        found = marked([texts], self.twin)
        if found is None:
            return None
        plain = [p for p, o in zip(pieces, is_other.tolist()) if not o]
        mine = self.words.encode_text(self.plain("\n".join(plain)), plain) if plain else (found[0][:0], found[1][:0])
        return _interleave(is_other, mine, found)


def _interleave(second: np.ndarray, first_of: tuple[np.ndarray, np.ndarray],
                second_of: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(ids, piece ends) of pieces in their order, from those of the pieces where `second` is False and of
    those where it is True."""
    counts = np.empty(len(second), dtype=np.int64)
    src = np.empty(len(second), dtype=np.int64)
    for mask, ends in ((~second, first_of[1]), (second, second_of[1])):
        counts[mask] = np.diff(ends, prepend=0)
        src[mask] = ends - counts[mask]
    at = _spans(src, counts)
    from_second = np.repeat(second, counts)
    out = np.empty(len(at), dtype=np.int64)
    out[from_second] = second_of[0][at[from_second]]
    out[~from_second] = first_of[0][at[~from_second]]
    return out, np.cumsum(counts)


def encode_pieces(tokenizer: Tokenizer, items: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """For items of text pieces: the ids of every piece of every item one after the other (int64 [n]) and
    where each piece's ids end in them (int64 [pieces]); the tokenizer's own `encode_pieces` when it has one."""
    own = getattr(tokenizer, "encode_pieces", None)
    return own(items) if own is not None else encode_pieces_one_by_one(tokenizer, items)


def encode_pieces_one_by_one(tokenizer: Tokenizer, items: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """`encode_pieces` from one `encode_batch` of every piece: for any tokenizer."""
    pieces = [p for ps in items for p in ps]
    ids = tokenizer.encode_batch(pieces) if pieces else []
    return (np.fromiter(itertools.chain.from_iterable(ids), np.int64),
            np.cumsum(np.fromiter(map(len, ids), np.int64, len(ids))))


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
