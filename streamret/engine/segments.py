"""Segments of one stream: pooled per sentence or chunk, kept in bounded memory, picked for summaries.

A segment's embedding is `RetNet.embed` of the sum of its tokens' final hidden states, which were
computed with the whole stream before them as context. Memory per stream is bounded: at most
`max_kept` closed segments (text cut to `max_text_bytes`, one embedding each) plus the open one
(a float64 sum of width d_model). When the closed segments would exceed `max_kept`, the kept and new
ones are ranked by relevance to the current stream embedding and the `keep_to` best stay (three
quarters of max_kept: `KeptPool`), so the candidates for an extractive summary are the most relevant
segments seen so far, and a stream is ranked once every few steps.

Relevance is salience (cosine similarity to the stream embedding) less a penalty for segments of few
words (`relevance`): a headword, a heading or a page number can be very similar to what a text is
about, yet tells a reader nothing. It decides what is kept and what a summary picks; the score a
segment reports is its salience.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import NamedTuple, Protocol

import numpy as np
import torch

from .kept_pool import KeptPool
from .text import (
    BODY_END_BYTE,
    BODY_FIRST_BYTE,
    BODY_LEAD,
    BODY_LEN,
    END_BYTE,
    SEED_FIRST_BYTE,
    SEED_LEAD,
    TEXT_LEN,
    piece_columns,
    piece_facts,
)


class SpanLike(Protocol):
    """What the tracker reads of a span of a step (`streamret.engine.scheduler.Span`)."""

    piece: object  # a TextPiece
    n_tokens: int
    first: bool
    last: bool


@dataclass
class Segment:
    """A span of the stream: text (cut to a bounded length), bytes [start_byte, end_byte), salience.

    text and start_byte skip the whitespace the segment starts with; the embedding pools all the
    segment's tokens, that whitespace included (a subword tokenizer merges it into the next word).
    """

    text: str
    start_byte: int
    end_byte: int
    score: float  # cosine similarity to the stream embedding when it was read
    embedding: np.ndarray | None = field(default=None, repr=False)  # float32 [embed_dim]; None when not requested


@dataclass
class ClosedSegment:
    """A segment that just ended: its pooled sums, waiting for a batched `RetNet.embed`."""

    text: str
    start_byte: int
    end_byte: int
    pool_sum: np.ndarray  # [d_model] float64
    pool_count: int


class Closed(NamedTuple):
    """The segments the streams of a step closed, stream after stream, before their embeddings (`book_step`)."""

    bounds: list[int]  # [streams + 1]: stream i closed the rows bounds[i]:bounds[i + 1]
    runs: np.ndarray  # int64 [k]: their runs among the step's (`StepRuns`): rows of the runs' embeddings
    byte_spans: np.ndarray  # int64 [k, 2]: [start, end) stream bytes
    counts: np.ndarray  # int64 [k]: tokens pooled, those of earlier steps included
    texts: list[str]  # cut to their tracker's max_text_bytes


def salience(embeddings: np.ndarray, stream_embedding: np.ndarray) -> np.ndarray:
    """Each row's dot product with the stream embedding, row by row: equal rows get equal scores wherever
    they sit (a matrix product may round the same row differently at another position, and ties decide
    which segments stay): einsum's loop over a row is the same for every row (a BLAS product is not), and it
    makes no temporary. stream_embedding: [embed_dim], or one per row."""
    return np.einsum("ij,ij->i" if np.ndim(stream_embedding) == 2 else "ij,j->i", embeddings, stream_embedding)


INFORMATIVE_WORDS = 8  # a segment of this many words or more gets no penalty
SHORT_PENALTY = 0.5  # the penalty of a segment without a word; it falls linearly to 0 at INFORMATIVE_WORDS
_LETTER, _WORD_CHAR = r"[^\W\d_]", r"[\w'’-]"
_WORD = re.compile(_LETTER + _WORD_CHAR + "*")  # a word: starts with a letter (what `word_counts` counts)
_SCANNED = 4 * INFORMATIVE_WORDS * 16  # the characters of a text searched for words


def _char_class(c: str) -> int:
    """2: a letter (a word starts with one), 1: another word character, 0: none (by the regexes themselves)."""
    return 2 if re.fullmatch(_LETTER, c) else 1 if re.fullmatch(_WORD_CHAR, c) else 0


_ASCII_CLASSES = bytes(_char_class(chr(c)) if c < 128 else 0 for c in range(256))  # a bytes.translate table
# ASCII text without its other word characters: letters 2, NUL (the texts' separator) 3, the rest 0
_ASCII_LETTERS = bytes(3 if c == 0 else 2 if _ASCII_CLASSES[c] == 2 else 0 for c in range(256))
_ASCII_OTHER_WORD_CHARS = bytes(c for c in range(128) if _ASCII_CLASSES[c] == 1)


def _code_points(text: str) -> np.ndarray:
    """uint32 [len(text)]: each character's code point (lone surrogates too), a writable copy."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32).copy()


def _non_ascii_classes(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the code points at or above 128 are, and their `_char_class` (uint8): one regex match per distinct
    character, however often it occurs."""
    high = np.flatnonzero(codes >= 128)
    distinct, which = np.unique(codes[high], return_inverse=True)
    return high, np.array([_char_class(chr(c)) for c in distinct.tolist()], np.uint8)[which]


def _char_classes(text: str) -> np.ndarray:
    """uint8 [len(text)]: `_char_class` of each character (the ASCII ones by a table, the others once each)."""
    if text.isascii():
        return np.frombuffer(text.encode("ascii").translate(_ASCII_CLASSES), np.uint8)
    codes = _code_points(text)
    classes = np.frombuffer(_ASCII_CLASSES, np.uint8)[np.minimum(codes, 128)]
    high, high_classes = _non_ascii_classes(codes)
    classes[high] = high_classes
    return classes


_STANDINS = np.frombuffer(b" 0a", np.uint8)  # an ASCII character of each `_char_class` (0, 1, 2)


def _ascii_standins(text: str) -> bytes:
    """text as ASCII bytes, each other character replaced by an ASCII one of its `_char_class` (" " for none,
    "0" for a word character that is no letter, "a" for a letter): the same word starts and ends, for the
    ASCII path below."""
    codes = _code_points(text)
    high, high_classes = _non_ascii_classes(codes)
    codes[high] = _STANDINS[high_classes]
    return codes.astype(np.uint8).tobytes()


def word_counts(texts: Sequence[str]) -> np.ndarray:
    """int64 [len(texts)]: the matches of `_WORD` in each text's first _SCANNED characters, for all the texts
    in one pass of array work (the regex costs ~30 ns a character). `_WORD` matches from the first letter of
    a maximal run of word characters to the run's end, so a match starts at each letter whose nearest
    earlier letter or non-word character is a non-word one; the texts are joined by NUL (no word character)."""
    if not texts:
        return np.zeros(0, np.int64)
    cut = [t[:_SCANNED] for t in texts]
    joined = "\0".join(cut)
    if joined.count("\0") == len(cut) - 1:  # no NUL inside a text: NUL separates them
        # ASCII (other characters as stand-ins of their class): bytes.translate drops the word characters that
        # are no letters, so that a match starts at each letter after a non-letter
        data = joined.encode("ascii") if joined.isascii() else _ascii_standins(joined)
        kinds = np.frombuffer(data.translate(_ASCII_LETTERS, _ASCII_OTHER_WORD_CHARS), np.uint8)
        letter = kinds == 2
        starts = letter.copy()
        starts[1:] &= ~letter[:-1]
        ends = np.append(np.flatnonzero(kinds == 3), len(kinds))
        return np.diff(np.searchsorted(np.flatnonzero(starts), ends), prepend=0)
    classes = _char_classes(joined)
    at = np.flatnonzero(classes != 1)
    c = classes[at]
    starts = at[(c == 2) & np.concatenate([[True], c[:-1] == 0])]
    return np.diff(np.searchsorted(starts, np.cumsum([len(t) + 1 for t in cut])), prepend=0)


def short_penalties(texts: Sequence[str]) -> np.ndarray:
    """float64 [len(texts)]: what `relevance` subtracts from each segment's salience for its text having few
    words (worked out once per kept segment: SegmentTracker.kept_penalty)."""
    return SHORT_PENALTY * np.maximum(0.0, 1.0 - word_counts(texts) / INFORMATIVE_WORDS)


def relevance(salience: np.ndarray, texts: Sequence[str]) -> np.ndarray:
    """Salience less each text's short penalty: how the kept segments and a summary's picks are ranked."""
    return np.asarray(salience, dtype=np.float64) - short_penalties(texts)


def truncate_utf8(text: str, max_bytes: int) -> str:
    if len(text) <= max_bytes and (4 * len(text) <= max_bytes or text.isascii()):
        return text  # fits whatever its characters (at most 4 bytes each), or ASCII: no need to encode
    raw = text.encode("utf-8")
    return text if len(raw) <= max_bytes else raw[:max_bytes].decode("utf-8", "ignore")


@dataclass
class SegmentTracker:
    """The open segment's running sums and the kept closed segments of one stream (numpy: this runs
    for every span of every step, where small torch ops would cost more than the work)."""

    d_model: int
    max_kept: int = 64
    max_text_bytes: int = 512
    open_sum: np.ndarray | None = None
    open_count: int = 0
    open_start: int | None = None  # stream byte offset of the open segment's first non-space character
    open_end: int = 0
    open_parts: list[str] = field(default_factory=list)  # the open segment's text so far (first bytes only)
    open_chars: int = 0
    # the kept segments live in a pool shared by the trackers of an engine (one of their own when None): a
    # slot of it, taken with the first kept segment (-1 until then)
    pool: KeptPool | None = field(default=None, repr=False, compare=False)
    slot: int = field(default=-1, compare=False)

    def __post_init__(self) -> None:
        if self.open_sum is None:
            self.open_sum = np.zeros(self.d_model, dtype=np.float64)
        if self.pool is None:
            self.pool = KeptPool(self.max_kept)
        elif self.pool.max_kept != self.max_kept:
            raise ValueError(f"a tracker of max_kept={self.max_kept} in a pool of max_kept={self.pool.max_kept}: "
                             "pass the pool made for the same limit")

    # the kept segments, in no particular order: texts, and rows [:len(kept_text)] of the arrays in their places
    @property
    def kept_text(self) -> list[str]:
        return self.pool.texts[self.slot] if self.slot >= 0 else []

    @property
    def kept_embeddings(self) -> np.ndarray | None:  # [max_kept, embed_dim] float32
        return self.pool.embeddings[self.slot] if self.slot >= 0 else None

    @property
    def kept_bytes(self) -> np.ndarray | None:  # [max_kept, 2] int64: [start, end) stream bytes
        return self.pool.byte_spans[self.slot] if self.slot >= 0 else None

    @property
    def kept_penalty(self) -> np.ndarray | None:  # [max_kept] float64: `short_penalties`, once per segment
        return self.pool.penalty[self.slot] if self.slot >= 0 else None

    def add(self, piece, span_sum: np.ndarray, span_count: int, first: bool, last: bool) -> list[ClosedSegment]:
        """Add the hidden-state sum of `span_count` tokens of `piece` (a `TextPiece`).

        A piece may arrive in several spans when the scheduler splits a long chunk across steps;
        `first`/`last` say whether this span holds the piece's first/last tokens. Returns the
        segments this closed. Runs for every span of every step: kept lean on purpose.
        """
        closed = []
        if first and piece.starts_segment:
            self._close(closed)
        self.open_sum += span_sum
        self.open_count += span_count
        if last:
            carry = self._book_text(piece)
            if carry is not None:
                self._close(closed)
                self._seed(piece, carry)
        return closed

    def _book_text(self, piece) -> str | None:
        """Add the text of a piece whose last tokens were booked; returns the carry (the text that starts the
        next segment, maybe "") when the piece ends the segment, else None."""
        text = piece.text
        carry = None
        if piece.ends_segment:
            split = len(text) - piece.carry_chars
            text, carry = text[:split], text[split:]
        if self.open_start is None:  # skip the whitespace a segment starts with
            stripped = text.lstrip()
            if stripped:
                self.open_start = piece.start_byte + len(text[: len(text) - len(stripped)].encode("utf-8"))
            text = stripped
        self.open_end = piece.end_byte - (piece.carry_bytes if carry is not None else 0)
        if text and self.open_chars < self.max_text_bytes:  # characters <= bytes: cut exactly at close
            self.open_parts.append(text)
            self.open_chars += len(text)
        return carry

    def _seed(self, piece, carry: str | None) -> None:
        """Start the next segment's text with the carry of the piece that closed the last one."""
        self.open_end = piece.end_byte
        stripped = carry.lstrip() if carry else ""
        if stripped:
            self.open_start = piece.end_byte - piece.carry_bytes + len(carry[: len(carry) - len(stripped)].encode())
            self.open_parts, self.open_chars = [stripped], len(stripped)

    def add_spans(self, spans: Sequence[SpanLike], sums: np.ndarray | None) -> list[ClosedSegment]:
        """`add` for all of one stream's spans of a step, in order; sums: their hidden-state sums, float64
        [len(spans), d_model] (None: the step ran no tokens of this stream, so the sums are zeros).
        `add_step_spans` does this for all the streams of a step at once."""
        if sums is None:
            sums = np.zeros((len(spans), self.d_model), dtype=np.float64)
        return add_step_spans([self], [spans], sums)[0]

    def _grown(self, text: str, continues: bool) -> str:
        """The text of a segment that continues the open one (continues) or starts anew, with `text` after it;
        past max_text_bytes characters the rest is not needed (cut to max_text_bytes bytes when closed)."""
        if not continues:
            return text[: self.max_text_bytes]
        held = "".join(self.open_parts)
        return held if self.open_chars >= self.max_text_bytes else held + text[: self.max_text_bytes]

    @property
    def open_text(self) -> str:
        return truncate_utf8("".join(self.open_parts), self.max_text_bytes)

    def _close(self, out: list[ClosedSegment]) -> None:
        if self.open_start is not None and self.open_count > 0:
            text = self.open_text.rstrip()
            out.append(ClosedSegment(text, self.open_start, self.open_end, self.open_sum.copy(), self.open_count))
        self.open_sum[:] = 0.0
        self.open_count, self.open_start, self.open_parts, self.open_chars = 0, None, [], 0

    def keep_many(self, texts: Sequence[str], byte_spans: np.ndarray, embeddings: np.ndarray,
                  reference: np.ndarray) -> None:
        """`keep_segments` for this stream alone (texts, byte_spans, embeddings: its new segments', in the order
        they closed; reference: the stream's embedding where each closed, [k, embed_dim], or one [embed_dim] for
        all of them: segments closed with no tokens between them, as a flush closes them)."""
        embeddings = np.asarray(embeddings)
        reference = np.asarray(reference)
        if reference.ndim == 1:
            reference = np.broadcast_to(reference, (len(texts), reference.shape[0]))
        keep_segments([self], [0, len(texts)], texts, byte_spans, embeddings, reference)

    def _document_order(self) -> list[int]:
        n = len(self.kept_text)
        return np.lexsort((self.kept_bytes[:n, 1], self.kept_bytes[:n, 0])).tolist() if n else []

    def segments(self, stream_embedding: np.ndarray, with_embeddings: bool = True) -> list[Segment]:
        """Kept segments in document order, scored by cosine similarity to `stream_embedding`."""
        if not self.kept_text:
            return []
        scores = self.kept_embeddings[: len(self.kept_text)] @ stream_embedding
        return [
            Segment(self.kept_text[i], *self.kept_bytes[i].tolist(), float(scores[i]),
                    self.kept_embeddings[i].copy() if with_embeddings else None)
            for i in self._document_order()
        ]

    def summary(self, stream_embedding: np.ndarray, k: int, mmr_lambda: float = 0.7) -> list[Segment]:
        """`select_summary(self.segments(stream_embedding), k, mmr_lambda)` from the kept arrays, with each
        segment's penalty as worked out when it was kept, making only the k picked Segments (a batch of short
        documents asks one summary per document: the engine process's per-document CPU, bench/RESULTS.md,
        session 26)."""
        n = len(self.kept_text)
        if k < 1 or not n:
            return []
        order = self._document_order()
        scores = (self.kept_embeddings[:n] @ stream_embedding)[order]  # (as `segments` scores them)
        salience = scores.astype(np.float64) - self.kept_penalty[order]
        picks = mmr_pick(self.kept_embeddings[order], salience, k, mmr_lambda)
        return [Segment(self.kept_text[order[i]], *self.kept_bytes[order[i]].tolist(), float(scores[i]),
                        self.kept_embeddings[order[i]].copy()) for i in picks]

    # ---- persistence: JSON-safe metadata plus tensors (see record.py)

    def to_record(self) -> tuple[dict, dict[str, torch.Tensor]]:
        order = self._document_order()
        meta = {
            "open": {"count": self.open_count, "start": self.open_start, "end": self.open_end, "text": self.open_text},
            "kept": [{"text": self.kept_text[i], "start": int(self.kept_bytes[i, 0]), "end": int(self.kept_bytes[i, 1])}
                     for i in order],
        }
        tensors = {"open_sum": torch.from_numpy(self.open_sum.copy())}
        if order:
            tensors["kept_embeddings"] = torch.from_numpy(self.kept_embeddings[order])
        return meta, tensors

    @classmethod
    def from_record(cls, meta: dict, tensors: dict[str, torch.Tensor], **limits) -> SegmentTracker:
        o = meta["open"]
        t = cls(
            d_model=tensors["open_sum"].shape[0], open_sum=tensors["open_sum"].to(torch.float64).numpy().copy(),
            open_count=int(o["count"]), open_start=o["start"], open_end=int(o["end"]),
            open_parts=[o["text"]] if o["text"] else [], open_chars=len(o["text"]), **limits,
        )
        kept = meta["kept"]
        emb = tensors.get("kept_embeddings")
        if len(kept) != (0 if emb is None else emb.shape[0]):
            raise ValueError("segment record holds a different number of texts and embeddings")
        if kept:  # more than max_kept (a record of a larger limit): ranked against their mean as they come
            rows = emb.float().numpy()
            texts = [truncate_utf8(k["text"], t.max_text_bytes) for k in kept]
            t.keep_many(texts, np.array([[k["start"], k["end"]] for k in kept], np.int64), rows, rows.mean(axis=0))
        return t


@dataclass
class StepSpans:
    """The spans of a step's streams, stream after stream, as arrays (`StreamWork.step_spans` reads them
    from the items' layouts, `StepSpans.of` from span objects)."""

    lens: np.ndarray  # int64 [spans]: tokens
    per_stream: np.ndarray  # int64 [streams]: spans of each stream
    cut_before: np.ndarray  # bool [spans]: the span starts a piece that starts a segment
    cut_after: np.ndarray  # bool [spans]: the span ends a piece that ends a segment
    last: np.ndarray  # bool [spans]: the span holds its piece's last token (the piece's text is booked then)
    facts: np.ndarray  # int64 [spans, 8]: `piece_facts` of the spans' pieces
    text: str  # the texts of the pieces whose last token is in the step, one after the other

    @classmethod
    def of(cls, spans: Sequence[Sequence[SpanLike]]) -> StepSpans:
        flat = [s for sp in spans for s in sp]
        first = np.fromiter((s.first for s in flat), dtype=bool, count=len(flat))
        last = np.fromiter((s.last for s in flat), dtype=bool, count=len(flat))
        facts = piece_facts([s.piece for s in flat])
        starts = np.fromiter((s.piece.starts_segment for s in flat), dtype=bool, count=len(flat))
        ends = np.fromiter((s.piece.ends_segment for s in flat), dtype=bool, count=len(flat))
        return cls(np.fromiter((s.n_tokens for s in flat), dtype=np.int64, count=len(flat)),
                   np.array([len(sp) for sp in spans], dtype=np.int64), first & starts, last & ends, last, facts,
                   "".join(s.piece.text for s in flat if s.last))

    @classmethod
    def of_items(cls, items: Sequence[Sequence], lens: np.ndarray) -> list[StepSpans]:
        """Per item (a list of `TextPiece`s), `of` one stream's spans that hold its pieces whole: what a step
        that runs the whole item books (`PieceLayout`). lens: int64 [pieces], the tokens of every piece, item
        after item."""
        texts, numbers, facts = piece_columns(list(chain.from_iterable(items)))
        return cls.of_columns(texts, numbers, facts, np.fromiter(map(len, items), np.int64, len(items)), lens)

    @classmethod
    def of_columns(cls, texts: list[str], numbers: np.ndarray, facts: np.ndarray, counts: np.ndarray,
                   lens: np.ndarray) -> list[StepSpans]:
        """`of_items` from the pieces' columns (`piece_columns`, every item's pieces one after the other; counts:
        int64 [items], the pieces of each), with array work over all the items' pieces at once (no span objects,
        no loop over pieces); each item's arrays are copies, so that an item that stays queued does not hold its
        batch's."""
        lens = np.asarray(lens, dtype=np.int64)
        per_stream = counts.reshape(-1, 1)
        starts_segment, ends_segment = numbers[:, 2].astype(bool), numbers[:, 3].astype(bool)
        whole = np.ones(len(texts), dtype=bool)
        out, a = [], 0
        for k, b in enumerate(np.cumsum(counts).tolist()):
            out.append(cls(lens[a:b].copy(), per_stream[k].copy(), starts_segment[a:b].copy(),
                           ends_segment[a:b].copy(), whole[a:b].copy(), facts[a:b].copy(), "".join(texts[a:b])))
            a = b
        return out

    @property
    def char_offsets(self) -> np.ndarray:
        """int64 [spans + 1]: where each span's piece text starts in `text` (for the pieces booked: all of
        them when every span is its piece's last, as in a whole item)."""
        return np.concatenate([[0], np.cumsum(np.where(self.last, self.facts[:, TEXT_LEN], 0))])

    @classmethod
    def concat(cls, parts: Sequence[StepSpans]) -> StepSpans:
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                     ("lens", "per_stream", "cut_before", "cut_after", "last", "facts")),
                   "".join(p.text for p in parts))


@dataclass
class StepRuns:
    """A step's packed tokens cut at every segment boundary of its streams: runs of consecutive tokens,
    each pooled into one sum (on the device, by `ModelRunner.run`). A stream's runs follow one another
    in the packed order; its first run continues the segment open before the step (its sum and count
    are added), its last run stays open after it, and every run in between (maybe empty) closed a
    segment, whose text `book_step` books."""

    token_cu: np.ndarray  # int64 [runs + 1]: offsets of the runs in the packed tokens
    span_start: np.ndarray  # int64 [runs]: each run's first span (a run holds the spans up to the next's)
    event_start: np.ndarray  # int64 [runs]: each run's first slot in `book_step`'s events
    first: np.ndarray  # int64 [streams]: each stream's first run
    last: np.ndarray  # int64 [streams]: each stream's last run
    counts: np.ndarray  # int64 [runs]: tokens pooled in each run, the open segment's earlier ones included
    open_sums: np.ndarray  # float64 [streams, d_model]: the segments open before the step (first runs add them)


def _slots(spans: StepSpans) -> tuple[np.ndarray, np.ndarray]:
    """Booking a step is a sequence of events: per stream a slot for what was open before the step, then
    per span three (its cut before, its text, its cut after and the carry that starts the next segment).
    Returns the stream slots [streams] and the first slot of each span [spans]."""
    n_streams = len(spans.per_stream)
    stream_of_span = np.repeat(np.arange(n_streams), spans.per_stream)
    stream_first_span = np.concatenate([[0], np.cumsum(spans.per_stream)[:-1]]).astype(np.int64)
    return 3 * stream_first_span + np.arange(n_streams), 3 * np.arange(len(spans.lens)) + stream_of_span + 1


def step_runs(trackers: Sequence[SegmentTracker], spans: StepSpans) -> StepRuns:
    """The runs of a step, in numpy (no loop over spans): cut before each span that starts a segment-starting
    piece and after each span that ends a segment-ending piece. A cut after span i and one before span
    i + 1 leave an empty run between them (its carried text is given up, as `add` does)."""
    n_spans, n_streams = len(spans.lens), len(spans.per_stream)
    if len(trackers) != n_streams or int(spans.per_stream.sum()) != n_spans:
        raise ValueError(f"{len(trackers)} trackers for {n_streams} streams of {int(spans.per_stream.sum())} spans, "
                         f"{n_spans} spans given: pass one tracker per stream and spans adding up")
    stream_slot, span_slot = _slots(spans)
    after, before = np.flatnonzero(spans.cut_after), np.flatnonzero(spans.cut_before)
    stream_first_span = stream_slot - np.arange(n_streams)
    slots = np.concatenate([span_slot[after] + 2, stream_slot, span_slot[before]])  # distinct, in event order
    order = np.argsort(slots, kind="stable")
    run_start = np.concatenate([after + 1, stream_first_span // 3, before])[order]
    first = np.flatnonzero((order >= len(after)) & (order < len(after) + n_streams))
    last = np.append(first[1:], len(run_start)) - 1
    span_cu = np.concatenate([[0], np.cumsum(spans.lens, dtype=np.int64)])
    token_cu = span_cu[np.append(run_start, n_spans)]
    counts = np.diff(token_cu)
    counts[first] += np.array([t.open_count for t in trackers], dtype=np.int64)
    open_sums = np.stack([t.open_sum for t in trackers]) if trackers else np.zeros((0, 0), np.float64)
    return StepRuns(token_cu, run_start, slots[order], first, last, counts, open_sums)


def _closed_texts(trackers: Sequence[SegmentTracker], bounds: list[int], text: str, char_spans: np.ndarray,
                  inherited: np.ndarray) -> list[str]:
    """The texts of a step's closed segments (stream i's: rows bounds[i]:bounds[i + 1] of char_spans, [start,
    end) characters of `text`), cut to their tracker's max_text_bytes. A stream's first continues the text
    its tracker holds open before the step when `inherited` (taken before the step changes it)."""
    row_limits = np.repeat([t.max_text_bytes for t in trackers], np.diff(bounds))
    # past its limit a text is cut (in bytes, at close); characters are at most as many as bytes
    starts = char_spans[:, 0].tolist()
    ends = np.minimum(char_spans[:, 1], char_spans[:, 0] + row_limits).tolist()
    limits = row_limits.tolist()
    texts = [(r if 4 * len(r) <= m else truncate_utf8(r, m)).rstrip()
             for a, b, m in zip(starts, ends, limits) for r in (text[a:b],)]
    continues = inherited.tolist()
    for t, a, b in zip(trackers, bounds[:-1], bounds[1:]):
        if b > a and continues[a]:  # made again, after the text held open
            held, m = "".join(t.open_parts), limits[a]
            texts[a] = truncate_utf8(held if t.open_chars >= m else held + text[starts[a] : ends[a]], m).rstrip()
    return texts


def book_step(trackers: Sequence[SegmentTracker], spans: StepSpans, runs: StepRuns,
              open_after: np.ndarray) -> Closed:
    """Book a step's segments and set each stream's open segment (open_after: float64 [streams, d_model],
    each stream's last run's sum). Where each run's segment starts and ends (bytes, characters of
    `spans.text`) is array work over the step's events; only the segments closed are then cut out of the
    text, one string slice each. Returns the segments the streams closed."""
    n_streams, facts, last = len(trackers), spans.facts, spans.last
    stream_slot, span_slot = _slots(spans)
    n_slots = 3 * len(spans.lens) + n_streams
    char0 = spans.char_offsets
    stream_char0 = char0[(stream_slot - np.arange(n_streams)) // 3]
    start_byte = np.full(n_slots, -1, np.int64)
    start_char = np.zeros(n_slots, np.int64)
    end_byte = np.full(n_slots, -1, np.int64)
    end_char = np.zeros(n_slots, np.int64)
    has_end = np.zeros(n_slots, bool)
    # before the step: what the tracker holds open
    start_byte[stream_slot] = [-1 if t.open_start is None else t.open_start for t in trackers]
    start_char[stream_slot] = stream_char0
    end_byte[stream_slot] = [t.open_end for t in trackers]
    end_char[stream_slot], has_end[stream_slot] = stream_char0, True
    # a piece's text, booked with its last token: its first non-space character may start the segment
    body = span_slot + 1
    booked = np.flatnonzero(last)
    lead = facts[booked, BODY_LEAD] >= 0
    start_byte[body[booked[lead]]] = facts[booked[lead], BODY_FIRST_BYTE]
    start_char[body[booked[lead]]] = char0[booked[lead]] + facts[booked[lead], BODY_LEAD]
    end_byte[body[booked]] = facts[booked, BODY_END_BYTE]
    end_char[body[booked]], has_end[body[booked]] = char0[booked] + facts[booked, BODY_LEN], True
    # a cut after a piece: its carry starts the next segment's text
    seed = span_slot + 2
    cut = np.flatnonzero(spans.cut_after)
    carried = cut[facts[cut, SEED_LEAD] >= 0]
    start_byte[seed[carried]] = facts[carried, SEED_FIRST_BYTE]
    start_char[seed[carried]] = char0[carried] + facts[carried, SEED_LEAD]
    end_byte[seed[cut]] = facts[cut, END_BYTE]
    end_char[seed[cut]], has_end[seed[cut]] = char0[cut] + facts[cut, TEXT_LEN], True
    # per run: its first start and its last end (up to its own end slot)
    run_end = np.append(runs.event_start[1:], n_slots)
    starts = np.flatnonzero(start_byte >= 0)
    k = np.searchsorted(starts, runs.event_start)
    at = starts[np.minimum(k, len(starts) - 1)] if len(starts) else np.zeros(len(run_end), np.int64)
    has_start = (k < len(starts)) & (at < run_end)
    ends = np.flatnonzero(has_end)
    end_at = ends[np.searchsorted(ends, run_end) - 1]
    run_start_byte, run_start_char = np.where(has_start, start_byte[at], -1), start_char[at]
    run_end_byte, run_end_char = end_byte[end_at], end_char[end_at]
    is_stream_slot = np.zeros(n_slots, bool)
    is_stream_slot[stream_slot] = True
    inherited = has_start & is_stream_slot[at]
    emitted = has_start & (runs.counts > 0)
    emitted[runs.last] = False
    closed_runs = np.flatnonzero(emitted)
    owner = np.searchsorted(runs.first, closed_runs, side="right") - 1
    text = spans.text
    byte_spans = np.stack([run_start_byte[closed_runs], run_end_byte[closed_runs]], axis=1)
    char_spans = np.stack([run_start_char[closed_runs], run_end_char[closed_runs]], axis=1)
    bounds = np.searchsorted(owner, np.arange(len(trackers) + 1)).tolist()
    out = Closed(bounds, closed_runs, byte_spans, runs.counts[closed_runs],
                 _closed_texts(trackers, bounds, text, char_spans, inherited[closed_runs]))
    final = runs.last
    for tracker, open_sum, count, end, start, a, b, inh in zip(
            trackers, open_after, runs.counts[final].tolist(), run_end_byte[final].tolist(),
            run_start_byte[final].tolist(), run_start_char[final].tolist(), run_end_char[final].tolist(),
            inherited[final].tolist()):
        tracker.open_sum[:] = open_sum
        tracker.open_count, tracker.open_end = count, end
        if start >= 0:
            raw = tracker._grown(text[a:b], inh)
            tracker.open_start = start
            tracker.open_parts = [raw[: max(tracker.max_text_bytes, tracker.open_chars)]] if raw else []
            tracker.open_chars = len(tracker.open_parts[0]) if raw else 0
        else:
            tracker.open_start, tracker.open_parts, tracker.open_chars = None, [], 0
    return out


def run_sums(runs: StepRuns, span_sums: np.ndarray, span_lens: np.ndarray) -> np.ndarray:
    """The runs' sums from the spans' (float64 [spans, d_model]), on the host: what the device adds up
    from the tokens (`ModelRunner.run`). For the tests and the steps without tokens."""
    span_run = np.repeat(np.arange(len(runs.span_start)), np.diff(np.append(runs.span_start, len(span_lens))))
    sums = torch.zeros((len(runs.counts), span_sums.shape[1]), dtype=torch.float64)
    sums.index_add_(0, torch.from_numpy(span_run), torch.from_numpy(np.ascontiguousarray(span_sums, np.float64)))
    out = sums.numpy()
    out[runs.first] += runs.open_sums
    return out


def add_step_spans(trackers: Sequence[SegmentTracker], spans: Sequence[Sequence[SpanLike]],
                   sums: np.ndarray) -> list[list[ClosedSegment]]:
    """Book one step's spans of several streams from their sums on the host: `add` for each span, in order,
    stream by stream. trackers[i] gets spans[i]; sums: float64 [all spans, d_model], stream after stream.
    Returns the segments each stream closed, with their pooled sums (the engine's steps take the runs'
    sums from the device instead: `step_runs`, `book_step`)."""
    n_spans = sum(len(sp) for sp in spans)
    d = trackers[0].d_model if trackers else 0
    if sums.shape != (n_spans, d):
        raise ValueError(f"sums of shape {tuple(sums.shape)} for {n_spans} spans; pass one float64 row of width "
                         f"d_model={d} per span, stream after stream")
    step = StepSpans.of(spans)
    runs = step_runs(trackers, step)
    pooled = run_sums(runs, sums, step.lens)
    booked = book_step(trackers, step, runs, pooled[runs.last])
    runs_of, byte_spans, counts = booked.runs.tolist(), booked.byte_spans.tolist(), booked.counts.tolist()
    return [[ClosedSegment(booked.texts[j], *byte_spans[j], pooled[runs_of[j]], counts[j]) for j in range(a, b)]
            for a, b in zip(booked.bounds[:-1], booked.bounds[1:])]


def keep_segments(trackers: Sequence[SegmentTracker], bounds: Sequence[int], texts: Sequence[str],
                  byte_spans: np.ndarray, embeddings: np.ndarray, references: np.ndarray) -> None:
    """Keep the segments the streams of a step closed: trackers[i] gets the rows bounds[i]:bounds[i + 1] of
    texts (each at most its max_text_bytes: `book_step` and `add` cut them so), byte_spans (int64 [k, 2],
    [start, end) bytes), embeddings ([k, embed_dim]) and references ([k, embed_dim]: the stream's embedding
    where each segment closed, that is after its last token), in the order the stream closed them.

    The rule is the stream's own, segment after segment, so that what stays does not depend on how its text
    fell into steps (DESIGN.md, invariant 1): a new segment is kept while the stream keeps fewer than its
    `max_kept`; the one that would pass that is ranked with the kept ones by their relevance to the stream as it
    stands after it (its reference), and the `keep_to` most relevant stay (the pool's, three quarters of
    max_kept, so that a stream is ranked once every few segments, not at every one); equal scores go to the
    earlier segment (the kept rows are in no particular order, so the tie is broken by stream position, which
    does not depend on the order of earlier drops). After such a ranking the stream's rows sit in places
    [0, keep_to).

    Array work for the whole step, per pool of trackers (an engine's share one: `KeptPool`): the new texts'
    penalties in one pass, the appends of the streams with room in one scatter, the kept rows of the streams
    that overflow once in one gather, one product and one sort (the rows after the one that overflowed are then
    appended); a Python loop only over the texts that stay. A stream that overflows more than once in the step
    (a long chunk: it is ranked every max_kept - keep_to + 1 segments) is ranked on its own (`_keep_in_order`),
    its rankings on the candidates' numbers and its rows written once."""
    bounds = np.asarray(bounds, dtype=np.int64)
    counts = np.diff(bounds)
    if not counts.any():
        return
    embeddings = np.asarray(embeddings).astype(np.float32, copy=False)
    references = np.asarray(references).astype(np.float32, copy=False)
    if references.shape != embeddings.shape:
        raise ValueError(f"references of shape {references.shape} for segment embeddings of shape "
                         f"{embeddings.shape}: pass one reference row per new segment")
    penalties = short_penalties(texts)
    by_pool: dict[int, list[int]] = {}
    for i in np.flatnonzero(counts).tolist():
        by_pool.setdefault(id(trackers[i].pool), []).append(i)
    for group in by_pool.values():
        pool = trackers[group[0]].pool
        members = [trackers[i] for i in group]
        with pool.lock:
            for t in members:
                if t.slot < 0:
                    t.slot = pool.take(t, embeddings.shape[1])
            slots = np.fromiter((t.slot for t in members), np.int64, len(members))
            start, new = bounds[group], counts[group]
            room = pool.max_kept - pool.count[slots]
            twice = new - room > pool.max_kept - pool.keep_to + 1  # overflows again after its first ranking
            for j in np.flatnonzero(twice).tolist():
                _keep_in_order(pool, int(slots[j]), np.arange(start[j], start[j] + new[j]), texts, byte_spans,
                               embeddings, penalties, references)
            once = np.flatnonzero(~twice)
            # the rows up to the one that overflows (all where they fit), ranked as that one closed; then the rest
            take = np.minimum(new[once], room[once] + 1)
            _keep_in_pool(pool, slots[once], start[once], take, new[once] - take, texts, byte_spans, embeddings,
                          penalties, references[start[once] + take - 1])


def _most_relevant_first(score: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The rows by score, highest first, equal scores by their start, earlier first: `np.lexsort((starts, -score))`,
    by one sort of the scores where no two are equal (nearly always: about 7 times faster over a step's 6,500
    candidates on the workplace VM)."""
    neg = -score
    order = np.argsort(neg)
    ranked = neg[order]
    if len(ranked) > 1 and (np.isnan(ranked[-1]) or (ranked[1:] == ranked[:-1]).any()):
        return np.lexsort((starts, neg))
    return order


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """int64: starts[0] + (0 .. lengths[0] - 1), then starts[1] + (0 .. lengths[1] - 1), ..."""
    return np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(int(lengths.sum()))


def _keep_in_order(pool: KeptPool, slot: int, rows: np.ndarray, texts: Sequence[str], byte_spans: np.ndarray,
                   embeddings: np.ndarray, penalties: np.ndarray, references: np.ndarray) -> None:
    """`keep_segments` for the stream of `slot` (its pool's lock held), whose new rows overflow it more than once:
    each ranking orders the numbers of its candidates (the kept rows 0 .. n - 1, then the new ones) by the same
    scores and ties as `_keep_in_pool`, and the rows that stay after the last are written to the slot once."""
    m, keep_to = pool.max_kept, pool.keep_to
    n = int(pool.count[slot])
    emb = np.concatenate([pool.embeddings[slot, :n], embeddings[rows]])
    penalty = np.concatenate([pool.penalty[slot, :n], penalties[rows]])
    spans = np.concatenate([pool.byte_spans[slot, :n], byte_spans[rows]])
    stay, taken, i = np.arange(n), 0, m - n  # rows[i]: the new row that overflows the stream
    while i < len(rows):
        candidates = np.concatenate([stay, n + np.arange(taken, i + 1)])
        score = salience(emb[candidates], references[rows[i]]) - penalty[candidates]
        stay = candidates[_most_relevant_first(score, spans[candidates, 0])[:keep_to]]
        taken, i = i + 1, i + m - keep_to + 1
    final = np.concatenate([np.sort(stay), n + np.arange(taken, len(rows))])
    held, new_rows = pool.texts[slot], rows.tolist()
    pool.texts[slot] = [held[j] if j < n else texts[new_rows[j - n]] for j in final.tolist()]
    count = len(final)
    pool.embeddings[slot, :count] = emb[final]
    pool.penalty[slot, :count] = penalty[final]
    pool.byte_spans[slot, :count] = spans[final]
    pool.count[slot] = count


def _keep_in_pool(pool: KeptPool, slots: np.ndarray, first_row: np.ndarray, k: np.ndarray, tail: np.ndarray,
                  texts: Sequence[str], byte_spans: np.ndarray, embeddings: np.ndarray, penalties: np.ndarray,
                  reference: np.ndarray) -> None:
    """`keep_segments` in one pool (its lock held) for streams that overflow at most once: the stream of slots[j]
    takes the k[j] new rows from first_row[j], appended where they fit, else ranked with its kept rows against
    reference[j]; then the tail[j] rows after them are appended (they fit after a ranking)."""
    if not len(slots):
        return
    m = pool.max_kept
    n = pool.count[slots]
    fits = n + k <= m
    f = np.flatnonzero(fits)
    if len(f):  # room for all: appended
        kf = k[f]
        local = _ranges(np.zeros(len(f), np.int64), kf)
        _place(pool, np.repeat(slots[f], kf), np.repeat(n[f], kf) + local, _ranges(first_row[f], kf),
               texts, byte_spans, embeddings, penalties)
        pool.count[slots[f]] += kf
    o = np.flatnonzero(~fits)
    if not len(o):
        return
    # the overflowing streams' candidates: all their kept rows (group by group), then all their new rows
    so, no, ko, emb = slots[o], n[o], k[o], reference[o]
    kept_group, kept_local = np.nonzero(np.arange(m) < no[:, None])
    new_group = np.repeat(np.arange(len(o)), ko)
    new_rows = _ranges(first_row[o], ko)
    # the kept rows' salience stream by stream, on the pool's rows where they lie: gathering them first copied a
    # stream's 100 KB and took twice as long at 85 streams (the workplace VM)
    kept_scores = np.concatenate([salience(pool.embeddings[s, :c], r)
                                  for s, c, r in zip(so.tolist(), no.tolist(), emb)])
    kept_scores -= pool.penalty[so[kept_group], kept_local]
    new_scores = salience(embeddings[new_rows], emb[new_group]) - penalties[new_rows]
    group = np.concatenate([kept_group, new_group])
    starts = np.concatenate([pool.byte_spans[so[kept_group], kept_local, 0], byte_spans[new_rows, 0]])
    # by (stream, -relevance, start): by (-relevance, start), then stably by stream (a radix sort of small
    # ints: a lexsort with the stream as a third key costs three times as much)
    order = _most_relevant_first(np.concatenate([kept_scores, new_scores]), starts)
    order = order[np.argsort(group[order].astype(np.int16 if len(o) < 1 << 15 else np.int64), kind="stable")]
    sizes = no + ko
    stays = np.empty(len(group), bool)
    rank = np.arange(len(group)) - np.repeat(np.cumsum(sizes) - sizes, sizes)  # k-th best of its stream
    stays[order] = rank < pool.keep_to
    _compact(pool, so, kept_group, kept_local, stays[: len(kept_group)], new_group, new_rows,
             stays[len(kept_group) :], texts, byte_spans, embeddings, penalties)
    to = o[tail[o] > 0]  # after the ranking (keep_to rows): the rows that close after the one that overflowed
    if len(to):
        t = tail[to]
        _place(pool, np.repeat(slots[to], t), pool.keep_to + _ranges(np.zeros(len(to), np.int64), t),
               _ranges(first_row[to] + k[to], t), texts, byte_spans, embeddings, penalties)
        pool.count[slots[to]] += t


def _compact(pool: KeptPool, slots: np.ndarray, kept_group: np.ndarray, kept_local: np.ndarray,
             kept_stays: np.ndarray, new_group: np.ndarray, new_rows: np.ndarray, new_stays: np.ndarray,
             texts: Sequence[str], byte_spans: np.ndarray, embeddings: np.ndarray, penalties: np.ndarray) -> None:
    """Leave each overflowing stream (slots[g]) its rows that stay in places [0, keep_to): the kept ones there
    stay put, the holes (dropped kept rows', then free places, lowest first) take the kept ones that stay from
    places past keep_to, then the new ones that stay, in step order."""
    keep_to = pool.keep_to
    occupied = np.zeros((len(slots), keep_to), bool)
    put = kept_stays & (kept_local < keep_to)
    occupied[kept_group[put], kept_local[put]] = True
    _, holes = np.nonzero(~occupied)  # stream by stream, lowest first
    movers = np.flatnonzero(kept_stays & (kept_local >= keep_to))  # only when a stream held more than keep_to
    new = np.flatnonzero(new_stays)
    by_stream = np.argsort(np.concatenate([kept_group[movers], new_group[new]]), kind="stable")
    moved = by_stream < len(movers)
    if moved.any():
        src = movers[by_stream[moved]]
        at, old, hole = slots[kept_group[src]], kept_local[src], holes[moved]
        for a in (pool.embeddings, pool.penalty, pool.byte_spans):
            a[at, hole] = a[at, old]
        kept = pool.texts
        for slot, o, h in zip(at.tolist(), old.tolist(), hole.tolist()):
            kept[slot][h] = kept[slot][o]
    src = new[by_stream[~moved] - len(movers)]
    _place(pool, slots[new_group[src]], holes[~moved], new_rows[src], texts, byte_spans, embeddings, penalties)
    if keep_to < pool.max_kept:
        for slot in slots.tolist():
            del pool.texts[slot][keep_to:]
    pool.count[slots] = keep_to


def _place(pool: KeptPool, slots: np.ndarray, places: np.ndarray, rows: np.ndarray, texts: Sequence[str],
           byte_spans: np.ndarray, embeddings: np.ndarray, penalties: np.ndarray) -> None:
    """Rows of the step's arrays into pool places (slot, place); a slot's places past its texts come in order."""
    pool.embeddings[slots, places] = embeddings[rows]
    pool.penalty[slots, places] = penalties[rows]
    pool.byte_spans[slots, places] = byte_spans[rows]
    kept = pool.texts
    for slot, place, row in zip(slots.tolist(), places.tolist(), rows.tolist()):
        held = kept[slot]
        if place < len(held):
            held[place] = texts[row]
        else:
            held.append(texts[row])

def select_summary(segments: list[Segment], k: int, mmr_lambda: float = 0.7) -> list[Segment]:
    """Top-k segments by maximal marginal relevance (relevance minus redundancy), in document order.

    Needs the segments' embeddings. score_i = lambda * relevance_i - (1 - lambda) * max_j cos(i, j)
    over the already picked j, where relevance is salience less the penalty for few words (`relevance`);
    the first pick is the most relevant segment. The reference that a stream's own summary,
    SegmentTracker.summary (what the engine calls), is tested against.
    """
    if k < 1 or not segments:
        return []
    emb = np.stack([s.embedding for s in segments])
    salience = relevance([s.score for s in segments], [s.text for s in segments])
    return [segments[i] for i in mmr_pick(emb, salience, k, mmr_lambda)]


def mmr_pick(emb: np.ndarray, salience: np.ndarray, k: int, mmr_lambda: float) -> list[int]:
    """`select_summary`'s picks as row numbers, in order: emb [n, d] the segments' embeddings, salience [n]
    float64 their relevance."""
    if k < 1:
        return []
    if len(salience) <= k:  # every segment is picked, whatever the order of the picks
        return list(range(len(salience)))
    # only the picked rows of the similarity matrix are read: k - 1 matrix-vector products instead of the n x n
    # product (a short document's summary in a batch job: about a third of the time at 100 segments on the
    # workplace VM, bench/RESULTS.md, session 32)
    relevance = mmr_lambda * salience
    score = relevance
    picked: list[int] = []
    redundancy = None
    while True:
        i = int(np.argmax(score))
        picked.append(i)
        if len(picked) == k:
            return sorted(picked)
        sim = emb @ emb[i]
        redundancy = sim if redundancy is None else np.maximum(redundancy, sim)
        score = relevance - (1 - mmr_lambda) * redundancy
        score[picked] = -np.inf
