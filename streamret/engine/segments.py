"""Segments of one stream: pooled per sentence or chunk, kept in bounded memory, picked for summaries.

A segment's embedding is `RetNet.embed` of the sum of its tokens' final hidden states, which were
computed with the whole stream before them as context. Memory per stream is bounded: at most
`max_kept` closed segments (text cut to `max_text_bytes`, one embedding each) plus the open one
(a float64 sum of width d_model). When a closed segment would exceed `max_kept`, the kept segment
least similar to the current stream embedding is dropped, so the candidates for an extractive
summary are the most salient segments seen so far.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


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
    pool_sum: torch.Tensor  # [d_model] float64
    pool_count: int


def truncate_utf8(text: str, max_bytes: int) -> str:
    raw = text.encode("utf-8")
    return text if len(raw) <= max_bytes else raw[:max_bytes].decode("utf-8", "ignore")


@dataclass
class SegmentTracker:
    """The open segment's running sums and the kept closed segments of one stream."""

    d_model: int
    max_kept: int = 64
    max_text_bytes: int = 512
    max_segment_bytes: int = 4096
    open_sum: torch.Tensor | None = None
    open_count: int = 0
    open_start: int | None = None  # stream byte offset of the open segment's first non-space character
    open_end: int = 0
    open_text: str = ""
    kept_text: list[str] = field(default_factory=list)
    kept_bytes: list[tuple[int, int]] = field(default_factory=list)
    kept_embeddings: np.ndarray | None = None  # [n_kept, embed_dim] float32

    def __post_init__(self) -> None:
        if self.open_sum is None:
            self.open_sum = torch.zeros(self.d_model, dtype=torch.float64)

    def add(self, piece, span_sum: torch.Tensor, span_count: int, first: bool, last: bool) -> list[ClosedSegment]:
        """Add the hidden-state sum of `span_count` tokens of `piece` (a `TextPiece`).

        A piece may arrive in several spans when the scheduler splits a long chunk across steps;
        `first`/`last` say whether this span holds the piece's first/last tokens. Returns the
        segments this closed.
        """
        closed = []
        if first and piece.starts_segment:
            closed += self._close()
        self.open_sum += span_sum
        self.open_count += span_count
        if last:
            self._add_text(piece)
            too_long = self.open_start is not None and self.open_end - self.open_start >= self.max_segment_bytes
            if piece.ends_segment or too_long:
                closed += self._close()
        return closed

    def _add_text(self, piece) -> None:
        text = piece.text
        if self.open_start is None:  # skip the whitespace a segment starts with
            stripped = text.lstrip()
            if not stripped:
                self.open_end = piece.end_byte
                return
            self.open_start = piece.start_byte + len(text[: len(text) - len(stripped)].encode("utf-8"))
            text = stripped
        self.open_end = piece.end_byte
        if len(self.open_text) < self.max_text_bytes:  # characters <= bytes: a cheap bound before the exact cut
            self.open_text = truncate_utf8(self.open_text + text, self.max_text_bytes)

    def _close(self) -> list[ClosedSegment]:
        out = []
        if self.open_start is not None and self.open_count > 0:
            text = self.open_text.rstrip()
            out.append(ClosedSegment(text, self.open_start, self.open_end, self.open_sum.clone(), self.open_count))
        self.open_sum.zero_()
        self.open_count, self.open_start, self.open_text = 0, None, ""
        return out

    def keep(self, seg: ClosedSegment, embedding: np.ndarray, stream_embedding: np.ndarray) -> None:
        """Keep a closed segment with its embedding; past max_kept drop the least salient one."""
        emb = embedding[None, :].astype(np.float32)
        self.kept_embeddings = emb if self.kept_embeddings is None else np.concatenate([self.kept_embeddings, emb])
        self.kept_text.append(truncate_utf8(seg.text, self.max_text_bytes))
        self.kept_bytes.append((seg.start_byte, seg.end_byte))
        if len(self.kept_text) > self.max_kept:
            drop = int(np.argmin(self.kept_embeddings @ stream_embedding))
            self.kept_embeddings = np.delete(self.kept_embeddings, drop, axis=0)
            del self.kept_text[drop], self.kept_bytes[drop]

    def segments(self, stream_embedding: np.ndarray, with_embeddings: bool = True) -> list[Segment]:
        """Kept segments in document order, scored by cosine similarity to `stream_embedding`."""
        if not self.kept_text:
            return []
        scores = self.kept_embeddings @ stream_embedding
        return [
            Segment(t, s, e, float(sc), self.kept_embeddings[i].copy() if with_embeddings else None)
            for i, (t, (s, e), sc) in enumerate(zip(self.kept_text, self.kept_bytes, scores))
        ]

    # ---- persistence: JSON-safe metadata plus tensors (see record.py)

    def to_record(self) -> tuple[dict, dict[str, torch.Tensor]]:
        meta = {
            "open": {"count": self.open_count, "start": self.open_start, "end": self.open_end, "text": self.open_text},
            "kept": [{"text": t, "start": s, "end": e} for t, (s, e) in zip(self.kept_text, self.kept_bytes)],
        }
        tensors = {"open_sum": self.open_sum.clone()}
        if self.kept_embeddings is not None:
            tensors["kept_embeddings"] = torch.from_numpy(self.kept_embeddings.copy())
        return meta, tensors

    @classmethod
    def from_record(cls, meta: dict, tensors: dict[str, torch.Tensor], **limits) -> SegmentTracker:
        o = meta["open"]
        t = cls(
            d_model=tensors["open_sum"].shape[0], open_sum=tensors["open_sum"].to(torch.float64).clone(),
            open_count=int(o["count"]), open_start=o["start"], open_end=int(o["end"]), open_text=o["text"],
            kept_text=[k["text"] for k in meta["kept"]],
            kept_bytes=[(int(k["start"]), int(k["end"])) for k in meta["kept"]],
            **limits,
        )
        if "kept_embeddings" in tensors:
            t.kept_embeddings = tensors["kept_embeddings"].float().numpy().copy()
        if len(t.kept_text) != (0 if t.kept_embeddings is None else len(t.kept_embeddings)):
            raise ValueError("segment record holds a different number of texts and embeddings")
        return t


def select_summary(segments: list[Segment], k: int, mmr_lambda: float = 0.7) -> list[Segment]:
    """Top-k segments by maximal marginal relevance (salience minus redundancy), in document order.

    Needs the segments' embeddings. score_i = lambda * salience_i - (1 - lambda) * max_j cos(i, j)
    over the already picked j; the first pick is the most salient segment.
    """
    if k < 1 or not segments:
        return []
    emb = np.stack([s.embedding for s in segments])
    salience = np.array([s.score for s in segments])
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
