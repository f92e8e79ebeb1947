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
from typing import NamedTuple, Protocol

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


class ClosedRun(NamedTuple):
    """A segment closed by a step, before its embedding: the run of the step's tokens that ends it."""

    run: int  # index among its stream's runs of the step (`StepRuns`): plus the stream's first run, the row
    text: str
    start_byte: int
    end_byte: int
    count: int  # tokens pooled, those of earlier steps included


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
    open_sum: np.ndarray | None = None
    open_count: int = 0
    open_start: int | None = None  # stream byte offset of the open segment's first non-space character
    open_end: int = 0
    open_parts: list[str] = field(default_factory=list)  # the open segment's text so far (first bytes only)
    open_chars: int = 0
    kept_text: list[str] = field(default_factory=list)  # kept segments, in no particular order
    # rows [:len(kept_text)] used, in the places of kept_text; allocated with the first kept segment
    kept_embeddings: np.ndarray | None = None  # [max_kept, embed_dim] float32
    kept_bytes: np.ndarray | None = None  # [max_kept, 2] int64: [start, end) stream bytes
    kept_penalty: np.ndarray | None = None  # [max_kept] float64: short_penalty, worked out once per segment

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

    def cut_text(self, spans: Sequence[SpanLike]) -> list[ClosedRun]:
        """The text side of `add` for a stream's spans of a step (no sums): the segments closed, each with
        the index of its run among the stream's runs of the step (`step_runs` cuts the same places: before
        a span that starts a segment-starting piece, after a span that ends a segment-ending piece)."""
        cuts = 0
        closed: list[ClosedRun] = []
        for span in spans:
            piece = span.piece
            if span.first and piece.starts_segment:
                cuts = self._cut(cuts, closed)
            self.open_count += span.n_tokens
            if span.last:
                carry = self._book_text(piece)
                if carry is not None:
                    cuts = self._cut(cuts, closed)
                    self._seed(piece, carry)
        return closed

    def _cut(self, cuts: int, closed: list[ClosedRun]) -> int:
        """`_close` for cut_text: the sums are the run's, added up on the device."""
        if self.open_start is not None and self.open_count > 0:
            closed.append(ClosedRun(cuts, self.open_text.rstrip(), self.open_start, self.open_end, self.open_count))
        self.open_count, self.open_start, self.open_parts, self.open_chars = 0, None, [], 0
        return cuts + 1

    @property
    def open_text(self) -> str:
        return truncate_utf8("".join(self.open_parts), self.max_text_bytes)

    def _close(self, out: list[ClosedSegment]) -> None:
        if self.open_start is not None and self.open_count > 0:
            text = self.open_text.rstrip()
            out.append(ClosedSegment(text, self.open_start, self.open_end, self.open_sum.copy(), self.open_count))
        self.open_sum[:] = 0.0
        self.open_count, self.open_start, self.open_parts, self.open_chars = 0, None, [], 0

    def _storage(self, embed_dim: int) -> None:
        if self.kept_embeddings is None:
            self.kept_embeddings = np.zeros((self.max_kept, embed_dim), dtype=np.float32)
            self.kept_penalty = np.zeros(self.max_kept, np.float64)
            self.kept_bytes = np.zeros((self.max_kept, 2), np.int64)

    def keep_many(self, texts: Sequence[str], byte_spans: np.ndarray, embeddings: np.ndarray,
                  stream_embedding: np.ndarray) -> None:
        """Keep the segments closed in one step (texts; byte_spans int64 [k, 2], their [start, end) bytes;
        embeddings [k, embed_dim]; one stream embedding for all): the `max_kept` most relevant of the kept
        and the new ones stay, with one matrix product. The new ones that stay take the places of the
        dropped ones, so the Python work is per new segment, not per kept one (the kept rows are in no
        particular order)."""
        n, k = len(self.kept_text), len(texts)
        self._storage(embeddings.shape[-1])
        texts = [truncate_utf8(t, self.max_text_bytes) for t in texts]
        penalty = np.array([short_penalty(t) for t in texts], dtype=np.float64)
        if n + k <= self.max_kept:
            self.kept_embeddings[n : n + k] = embeddings
            self.kept_penalty[n : n + k] = penalty
            self.kept_bytes[n : n + k] = byte_spans
            self.kept_text += texts
            return
        rows = np.concatenate([self.kept_embeddings[:n], embeddings.astype(np.float32, copy=False)])
        # most relevant first; equal scores go to the earlier segment (the kept rows are in no order, so
        # the tie is broken by stream position, which does not depend on the order of earlier drops)
        starts = np.concatenate([self.kept_bytes[:n, 0], byte_spans[:, 0]])
        scores = salience(rows, stream_embedding) - np.concatenate([self.kept_penalty[:n], penalty])  # relevance
        stays = np.zeros(n + k, dtype=bool)
        stays[np.lexsort((starts, -scores))[: self.max_kept]] = True
        new = np.flatnonzero(stays[n:])
        # places for the new ones that stay: those of the dropped kept ones, then the free ones (appended)
        places = np.concatenate([np.flatnonzero(~stays[:n]), np.arange(n, self.max_kept)])[: len(new)]
        self.kept_embeddings[places] = embeddings[new]
        self.kept_penalty[places] = penalty[new]
        self.kept_bytes[places] = byte_spans[new]
        for place, j in zip(places.tolist(), new.tolist()):
            if place < n:
                self.kept_text[place] = texts[j]
            else:
                self.kept_text.append(texts[j])

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
        if kept:  # more than max_kept (a record of a larger limit): those nearest their mean stay
            rows = emb.float().numpy()
            t.keep_many([k["text"] for k in kept], np.array([[k["start"], k["end"]] for k in kept], np.int64),
                        rows, rows.mean(axis=0))
        return t


@dataclass
class StepRuns:
    """A step's packed tokens cut at every segment boundary of its streams: runs of consecutive tokens,
    each pooled into one sum (on the device, by `ModelRunner.run`). A stream's runs follow one another
    in the packed order; its first run continues the segment open before the step (its sum and count
    are added), its last run stays open after it, and every run in between (maybe empty) closed a
    segment, whose text side `SegmentTracker.cut_text` books."""

    token_cu: np.ndarray  # int64 [runs + 1]: offsets of the runs in the packed tokens
    span_start: np.ndarray  # int64 [runs]: each run's first span (a run holds the spans up to the next's)
    first: np.ndarray  # int64 [streams]: each stream's first run
    last: np.ndarray  # int64 [streams]: each stream's last run
    counts: np.ndarray  # int64 [runs]: tokens pooled in each run, the open segment's earlier ones included
    open_sums: np.ndarray  # float64 [streams, d_model]: the segments open before the step (first runs add them)


def step_runs(trackers: Sequence[SegmentTracker], span_lens: np.ndarray, spans_per_stream: np.ndarray,
              cut_before: np.ndarray, cut_after: np.ndarray) -> StepRuns:
    """The runs of a step, in numpy (no loop over spans). span_lens: int64 [spans], token counts of all the
    streams' spans, stream after stream; spans_per_stream: int64 [streams];
    cut_before / cut_after: bool [spans], the span starts a piece that starts a segment / ends a piece that
    ends one (`StreamWork.spans_lens_cuts`). A cut after span i and one before span i + 1 leave an empty
    run between them, as `cut_text` counts them."""
    n_spans, n_streams = len(span_lens), len(spans_per_stream)
    if len(cut_before) != n_spans or len(cut_after) != n_spans or int(np.sum(spans_per_stream)) != n_spans:
        raise ValueError(f"{n_spans} span lens, {len(cut_before)} / {len(cut_after)} cut flags and "
                         f"{int(np.sum(spans_per_stream))} spans over the streams: pass one of each per span")
    stream_start = np.concatenate([[0], np.cumsum(spans_per_stream)[:-1]]).astype(np.int64)
    after = np.flatnonzero(cut_after) + 1
    before = np.flatnonzero(cut_before)
    # order of run starts at one span position: the previous stream's cut after its last span, this
    # stream's start, its cut before its first span
    keys = np.concatenate([3 * after, 3 * stream_start + 1, 3 * before + 2])
    order = np.argsort(keys, kind="stable")
    run_start = np.concatenate([after, stream_start, before])[order]
    first = np.flatnonzero((order >= len(after)) & (order < len(after) + n_streams))
    last = np.append(first[1:], len(run_start)) - 1
    span_cu = np.concatenate([[0], np.cumsum(span_lens, dtype=np.int64)])
    token_cu = span_cu[np.append(run_start, n_spans)]
    counts = np.diff(token_cu)
    counts[first] += np.array([t.open_count for t in trackers], dtype=np.int64)
    open_sums = np.stack([t.open_sum for t in trackers]) if trackers else np.zeros((0, 0), np.float64)
    return StepRuns(token_cu, run_start, first, last, counts, open_sums)


def book_step(trackers: Sequence[SegmentTracker], spans: Sequence[Sequence[SpanLike]], runs: StepRuns,
              open_after: np.ndarray) -> list[list[ClosedRun]]:
    """Book a step's text side for each stream and set its open sum (open_after: float64 [streams,
    d_model], each stream's last run's sum). Returns each stream's closed segments, their `run` made an
    index into all the step's runs."""
    out = []
    for tracker, sp, first, open_sum in zip(trackers, spans, runs.first.tolist(), open_after):
        tracker.open_sum[:] = open_sum
        closed = tracker.cut_text(sp)
        out.append([c._replace(run=c.run + first) for c in closed] if closed else closed)
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


def span_cut_flags(spans: Sequence[SpanLike]) -> tuple[np.ndarray, np.ndarray]:
    """cut_before and cut_after (`step_runs`) of some spans, read from the span objects."""
    before = np.fromiter((s.first and s.piece.starts_segment for s in spans), dtype=bool, count=len(spans))
    after = np.fromiter((s.last and s.piece.ends_segment for s in spans), dtype=bool, count=len(spans))
    return before, after


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
    flat = [s for sp in spans for s in sp]
    lens = np.array([s.n_tokens for s in flat], dtype=np.int64)
    before, after = span_cut_flags(flat)
    runs = step_runs(trackers, lens, np.array([len(sp) for sp in spans], np.int64), before, after)
    pooled = run_sums(runs, sums, lens)
    booked = book_step(trackers, spans, runs, pooled[runs.last])
    out = [[ClosedSegment(c.text, c.start_byte, c.end_byte, pooled[c.run], c.count) for c in closed]
           for closed in booked]
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
