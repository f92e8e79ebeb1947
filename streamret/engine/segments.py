"""Segments of one stream: pooled per sentence or chunk, kept in bounded memory, picked for summaries.

A segment's embedding is `RetNet.embed` of the sum of its tokens' final hidden states, which were
computed with the whole stream before them as context. Memory per stream is bounded: at most
`max_kept` closed segments (text cut to `max_text_bytes`, one embedding each) plus the open one
(a float64 sum of width d_model). When a closed segment would exceed `max_kept`, the kept segment
least relevant to the current stream embedding is dropped, so the candidates for an extractive
summary are the most relevant segments seen so far.

Relevance is salience (cosine similarity to the stream embedding) less a penalty for segments of few
words (`relevance`): a headword, a heading or a page number can be very similar to what a text is
about, yet tells a reader nothing. It decides what is kept and what a summary picks; the score a
segment reports is its salience.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch


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


def salience(embeddings: np.ndarray, stream_embedding: np.ndarray) -> np.ndarray:
    """Each row's dot product with the stream embedding, row by row: equal rows get equal scores wherever
    they sit (a matrix product may round the same row differently at another position, and ties decide
    which segments stay)."""
    return (embeddings * stream_embedding).sum(axis=1)


INFORMATIVE_WORDS = 8  # a segment of this many words or more gets no penalty
SHORT_PENALTY = 0.5  # the penalty of a segment without a word; it falls linearly to 0 at INFORMATIVE_WORDS
_WORD = re.compile(r"[^\W\d_][\w'’-]*")  # a word: starts with a letter


def short_penalty(text: str) -> float:
    """What `relevance` subtracts from a segment's salience for its text having few words (worked out once
    per kept segment: SegmentTracker.kept_penalty)."""
    words = len(_WORD.findall(text, 0, 4 * INFORMATIVE_WORDS * 16))
    return SHORT_PENALTY * max(0.0, 1.0 - words / INFORMATIVE_WORDS)


def relevance(salience: np.ndarray, texts: Sequence[str]) -> np.ndarray:
    """Salience less each text's `short_penalty`: how the kept segments and a summary's picks are ranked."""
    return np.asarray(salience, dtype=np.float64) - np.array([short_penalty(t) for t in texts], dtype=np.float64)


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
    max_segment_bytes: int | None = None  # close a segment at the first piece end this long after its start
    open_sum: np.ndarray | None = None
    open_count: int = 0
    open_start: int | None = None  # stream byte offset of the open segment's first non-space character
    open_end: int = 0
    open_parts: list[str] = field(default_factory=list)  # the open segment's text so far (first bytes only)
    open_chars: int = 0
    kept_text: list[str] = field(default_factory=list)  # kept segments, in no particular order
    kept_bytes: list[tuple[int, int]] = field(default_factory=list)
    kept_embeddings: np.ndarray | None = None  # [max_kept + 1, embed_dim] float32; rows [:len(kept_text)] used
    # short_penalty of each kept text, in the same places (worked out once per segment, not per step)
    kept_penalty: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))

    def __post_init__(self) -> None:
        if self.open_sum is None:
            self.open_sum = np.zeros(self.d_model, dtype=np.float64)

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
            if carry is not None or (
                self.max_segment_bytes is not None and self.open_start is not None
                and self.open_end - self.open_start >= self.max_segment_bytes
            ):
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

    def _cut_spans(self, spans: Sequence[SpanLike]) -> tuple[list[int], list[tuple[int, str, int, int, int]]]:
        """The text side of `add` for a stream's spans of a step (no sums): where the open segment is cut
        (span positions, in order), and the segments closed, as (index of their cut, text, start_byte,
        end_byte, token count). The sums are added up by the caller, per run of spans between cuts."""
        cuts: list[int] = []
        closed: list[tuple[int, str, int, int, int]] = []
        for i, span in enumerate(spans):
            piece = span.piece
            if span.first and piece.starts_segment:
                self._cut(i, cuts, closed)
            self.open_count += span.n_tokens
            if span.last:
                carry = self._book_text(piece)
                if carry is not None or (
                    self.max_segment_bytes is not None and self.open_start is not None
                    and self.open_end - self.open_start >= self.max_segment_bytes
                ):
                    self._cut(i + 1, cuts, closed)
                    self._seed(piece, carry)
        return cuts, closed

    def _cut(self, at: int, cuts: list[int], closed: list[tuple[int, str, int, int, int]]) -> None:
        """`_close` for _cut_spans: the sums are added up afterwards, per run between cuts."""
        if self.open_start is not None and self.open_count > 0:
            closed.append((len(cuts), self.open_text.rstrip(), self.open_start, self.open_end, self.open_count))
        cuts.append(at)
        self.open_count, self.open_start, self.open_parts, self.open_chars = 0, None, [], 0

    @property
    def open_text(self) -> str:
        return truncate_utf8("".join(self.open_parts), self.max_text_bytes)

    def _close(self, out: list[ClosedSegment]) -> None:
        if self.open_start is not None and self.open_count > 0:
            text = self.open_text.rstrip()
            out.append(ClosedSegment(text, self.open_start, self.open_end, self.open_sum.copy(), self.open_count))
        self.open_sum[:] = 0.0
        self.open_count, self.open_start, self.open_parts, self.open_chars = 0, None, [], 0

    def keep(self, seg: ClosedSegment, embedding: np.ndarray, stream_embedding: np.ndarray) -> None:
        """Keep a closed segment with its embedding; past max_kept drop the least salient one."""
        n = len(self.kept_text)
        if self.kept_embeddings is None:
            self.kept_embeddings = np.zeros((self.max_kept + 1, embedding.shape[-1]), dtype=np.float32)
        if len(self.kept_penalty) < self.max_kept + 1:
            self.kept_penalty = np.zeros(self.max_kept + 1, np.float64)
        self.kept_embeddings[n] = embedding
        self.kept_text.append(truncate_utf8(seg.text, self.max_text_bytes))
        self.kept_bytes.append((seg.start_byte, seg.end_byte))
        self.kept_penalty[n] = short_penalty(self.kept_text[n])
        if n + 1 > self.max_kept:
            scores = salience(self.kept_embeddings[: n + 1], stream_embedding) - self.kept_penalty[: n + 1]
            drop = int(np.argmin(scores))
            self.kept_embeddings[drop] = self.kept_embeddings[n]  # move the last one into the hole
            self.kept_penalty[drop] = self.kept_penalty[n]
            self.kept_text[drop], self.kept_bytes[drop] = self.kept_text[n], self.kept_bytes[n]
            self.kept_text.pop()
            self.kept_bytes.pop()

    def keep_many(self, segs: list[ClosedSegment], embeddings: np.ndarray, stream_embedding: np.ndarray) -> None:
        """`keep` for several segments closed in one step (one stream embedding for all): the `max_kept`
        most relevant of the kept and the new ones stay, with one matrix product instead of one per segment.
        The new ones that stay take the places of the dropped ones, so the Python work is per new segment,
        not per kept one (the kept lists are in no particular order)."""
        n, k = len(self.kept_text), len(segs)
        if self.kept_embeddings is None:
            self.kept_embeddings = np.zeros((self.max_kept + 1, embeddings.shape[-1]), dtype=np.float32)
        if len(self.kept_penalty) < self.max_kept + 1:
            self.kept_penalty = np.zeros(self.max_kept + 1, np.float64)
        texts = [truncate_utf8(seg.text, self.max_text_bytes) for seg in segs]
        penalty = np.array([short_penalty(t) for t in texts], dtype=np.float64)
        if n + k <= self.max_kept:
            self.kept_embeddings[n : n + k] = embeddings
            self.kept_penalty[n : n + k] = penalty
            self.kept_text += texts
            self.kept_bytes += [(seg.start_byte, seg.end_byte) for seg in segs]
            return
        rows = np.concatenate([self.kept_embeddings[:n], embeddings.astype(np.float32, copy=False)])
        stays = np.zeros(n + k, dtype=bool)
        # most relevant first; equal scores go to the earlier segment (the kept lists are in no order, so
        # the tie is broken by stream position, which does not depend on the order of earlier drops)
        starts = np.array([b for b, _ in self.kept_bytes] + [seg.start_byte for seg in segs], dtype=np.int64)
        scores = salience(rows, stream_embedding) - np.concatenate([self.kept_penalty[:n], penalty])  # relevance
        stays[np.lexsort((starts, -scores))[: self.max_kept]] = True
        # places for the new ones that stay: those of the dropped kept ones, then the free ones (appended)
        places = [*np.flatnonzero(~stays[:n]).tolist(), *range(n, self.max_kept)]
        for place, j in zip(places, np.flatnonzero(stays[n:]).tolist()):
            seg = segs[j]
            self.kept_embeddings[place] = embeddings[j]
            self.kept_penalty[place] = penalty[j]
            text, span = texts[j], (seg.start_byte, seg.end_byte)
            if place < len(self.kept_text):
                self.kept_text[place], self.kept_bytes[place] = text, span
            else:
                self.kept_text.append(text)
                self.kept_bytes.append(span)

    def _document_order(self) -> list[int]:
        return sorted(range(len(self.kept_text)), key=lambda i: self.kept_bytes[i])

    def segments(self, stream_embedding: np.ndarray, with_embeddings: bool = True) -> list[Segment]:
        """Kept segments in document order, scored by cosine similarity to `stream_embedding`."""
        if not self.kept_text:
            return []
        scores = self.kept_embeddings[: len(self.kept_text)] @ stream_embedding
        return [
            Segment(self.kept_text[i], *self.kept_bytes[i], float(scores[i]),
                    self.kept_embeddings[i].copy() if with_embeddings else None)
            for i in self._document_order()
        ]

    # ---- persistence: JSON-safe metadata plus tensors (see record.py)

    def to_record(self) -> tuple[dict, dict[str, torch.Tensor]]:
        order = self._document_order()
        meta = {
            "open": {"count": self.open_count, "start": self.open_start, "end": self.open_end, "text": self.open_text},
            "kept": [{"text": self.kept_text[i], "start": self.kept_bytes[i][0], "end": self.kept_bytes[i][1]}
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
        for k, e in zip(kept, emb.float().numpy() if emb is not None else []):
            t.keep(ClosedSegment(k["text"], int(k["start"]), int(k["end"]), t.open_sum, 0), e, e)
        return t


def add_step_spans(trackers: Sequence[SegmentTracker], spans: Sequence[Sequence[SpanLike]],
                   sums: np.ndarray) -> list[list[ClosedSegment]]:
    """Book one step's spans of several streams: `add` for each span, in order, stream by stream.

    trackers[i] gets spans[i]; sums: float64 [all spans, d_model], the spans' hidden-state sums, stream
    after stream. Returns the segments each stream closed. The text side is a loop over the spans
    (`_cut_spans`); the sums are one `index_add_` into the runs of spans between segment cuts for the
    whole step, instead of an addition per span and a copy per segment.
    """
    n_spans = sum(len(sp) for sp in spans)
    d = trackers[0].d_model if trackers else 0
    if sums.shape != (n_spans, d):
        raise ValueError(f"sums of shape {tuple(sums.shape)} for {n_spans} spans; pass one float64 row of width "
                         f"d_model={d} per span, stream after stream")
    starts: list[int] = []  # first span of each run, over the whole step
    booked = []  # per stream: (its first run, its last run, the segments it closed)
    offset = 0
    for tracker, sp in zip(trackers, spans):
        cuts, closed = tracker._cut_spans(sp)
        first = len(starts)
        starts.append(offset)  # its first run continues the segment that was open before the step
        if cuts:
            starts += [offset + c for c in cuts]
        booked.append((first, len(starts) - 1, closed))
        offset += len(sp)
    begin = np.asarray(starts, dtype=np.int64)
    run_of_span = np.repeat(np.arange(len(begin)), np.diff(np.append(begin, offset)))  # empty runs: no span
    runs_t = torch.zeros((len(begin), d), dtype=torch.float64)  # index_add_: 10x np.add.reduceat's speed here
    runs_t.index_add_(0, torch.from_numpy(run_of_span), torch.from_numpy(np.ascontiguousarray(sums, np.float64)))
    runs = runs_t.numpy()
    out = []
    for tracker, (first, last, closed) in zip(trackers, booked):
        runs[first] += tracker.open_sum  # the segment open before the step goes on in its first run
        tracker.open_sum[:] = runs[last]
        out.append([ClosedSegment(text, start, end, runs[first + r], count) for r, text, start, end, count in closed]
                   if closed else [])
    return out


def select_summary(segments: list[Segment], k: int, mmr_lambda: float = 0.7) -> list[Segment]:
    """Top-k segments by maximal marginal relevance (relevance minus redundancy), in document order.

    Needs the segments' embeddings. score_i = lambda * relevance_i - (1 - lambda) * max_j cos(i, j)
    over the already picked j, where relevance is salience less the penalty for few words (`relevance`);
    the first pick is the most relevant segment.
    """
    if k < 1 or not segments:
        return []
    emb = np.stack([s.embedding for s in segments])
    salience = relevance([s.score for s in segments], [s.text for s in segments])
    sim = emb @ emb.T
    picked: list[int] = []
    redundancy = np.full(len(segments), -np.inf)
    while len(picked) < min(k, len(segments)):
        score = mmr_lambda * salience - (1 - mmr_lambda) * (redundancy if picked else 0.0)
        score[picked] = -np.inf
        i = int(np.argmax(score))
        picked.append(i)
        redundancy = np.maximum(redundancy, sim[i])
    return [segments[i] for i in sorted(picked)]
