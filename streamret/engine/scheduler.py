"""Continuous batching: which streams' tokens go into the next model step.

Each stream has a FIFO of accepted chunks (`WorkItem`s, once tokenized). A step serves streams
in round-robin order, taking each one's pending tokens (several chunks concatenated, in order) until
the step's token budget or stream limit is reached. A chunk is split across steps only when it is the
first of its stream in the step (a chunk longer than the budget, or the rest of one): its rest waits for
a later step, the stream's state carrying over. A chunk that would not complete behind others waits
whole, so a step that completes chunks of a stream leaves its state at a chunk boundary, which is what a
durable record must hold (the state after exactly the chunks up to applied_seq). A served stream with tokens
left goes to the back of the line, so every stream is served within a bounded number of steps.
Queues are bounded per stream and in total: a chunk counts from its acceptance (`reserve`, which raises
`TooBusy` instead of growing memory), and joins its stream's queue once tokenized (`enqueue`).
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from ..errors import TooBusy
from .text import TextPiece, TextSnapshot


@dataclass(eq=False)
class WorkItem:
    """One accepted append (or flush) of one stream: its tokens and the text pieces they came from."""

    stream_id: str
    seq: int | None  # None: a flush without data (does not advance seq)
    tokens: np.ndarray | None  # int64 [n]; None until tokenized
    pieces: list[TextPiece]
    piece_ends: np.ndarray | None  # token offset in `tokens` where each piece ends
    text_after: TextSnapshot  # the stream's text tail once this item is applied
    nbytes: int
    future: Future = field(default_factory=Future)
    taken: int = 0  # tokens handed to steps so far
    durable: bool = False  # write the stream's record before the ack, whatever the policy
    text_before: TextSnapshot | None = None  # the stream's text front before it, and its accepted seq:
    accepted_before: int = 0  # where the front goes back to if its tokenization fails
    queued: bool = False  # in its stream's queue (tokenized, and every earlier item queued)

    def __post_init__(self) -> None:
        self.set_tokens(self.tokens, self.piece_ends)

    def set_tokens(self, tokens: np.ndarray | None, piece_ends: np.ndarray | None) -> None:
        self.tokens, self.piece_ends = tokens, piece_ends
        self.n_tokens = 0 if tokens is None else len(tokens)
        ends = [] if piece_ends is None else [int(e) for e in piece_ends]
        self._bounds = list(zip([0, *ends[:-1]], ends))  # token range of each piece


@dataclass(frozen=True)
class Span:
    """Tokens of one text piece inside a step; first/last: the span holds the piece's first/last token."""

    piece: TextPiece
    n_tokens: int
    first: bool
    last: bool


@dataclass(frozen=True)
class Slice:
    """Tokens [start, end) of one work item that go into a step."""

    item: WorkItem
    start: int
    end: int

    @property
    def completes(self) -> bool:
        return self.end == self.item.n_tokens

    def spans(self) -> list[Span]:
        """The pieces this slice touches; a piece without tokens is reported in the slice at its offset."""
        item, start, end = self.item, self.start, self.end
        if start == 0 and end == item.n_tokens:  # the whole item in one step: the common case
            return [Span(p, b - a, True, True) for p, (a, b) in zip(item.pieces, item._bounds)]
        out = []
        for piece, (a, b) in zip(item.pieces, item._bounds):
            if b < start or a > end:
                continue
            n = max(0, min(b, end) - max(a, start))
            if a < b:
                first, last = start <= a < end, start < b <= end
            else:
                first = last = start <= a < end or a == end == item.n_tokens
            if n or first or last:
                out.append(Span(piece, n, first, last))
        return out


@dataclass
class StreamWork:
    """Everything one stream runs in a step: slices of its queued items, in order."""

    stream_id: str
    slices: list[Slice]

    @property
    def n_tokens(self) -> int:
        return sum(s.end - s.start for s in self.slices)

    def tokens(self) -> np.ndarray:
        return np.concatenate([s.item.tokens[s.start : s.end] for s in self.slices])

    def spans(self) -> list[Span]:
        return [span for s in self.slices for span in s.spans()]


@dataclass
class StepPlan:
    work: list[StreamWork]

    @property
    def n_tokens(self) -> int:
        return sum(w.n_tokens for w in self.work)


class Scheduler:
    """Owns the per-stream queues and decides each step's batch."""

    def __init__(
        self, max_step_tokens: int, max_step_streams: int, max_pending_chunks_per_stream: int,
        max_pending_bytes_per_stream: int, max_pending_chunks: int, max_pending_bytes: int,
    ):
        self.max_step_tokens = max_step_tokens
        self.max_step_streams = max_step_streams
        self.max_pending_chunks_per_stream = max_pending_chunks_per_stream
        self.max_pending_bytes_per_stream = max_pending_bytes_per_stream
        self.max_pending_chunks = max_pending_chunks
        self.max_pending_bytes = max_pending_bytes
        self._queues: dict[str, deque[WorkItem]] = {}  # items with tokens not yet handed to a step
        self._ready: deque[str] = deque()  # streams with queued items, in service order
        self._chunks: dict[str, int] = {}  # accepted, not yet completed, per stream
        self._bytes: dict[str, int] = {}
        self.pending_chunks = 0
        self.pending_bytes = 0
        self.pending_tokens = 0

    def add(self, item: WorkItem) -> None:
        """reserve, then enqueue: for an item tokenized already."""
        self.reserve(item)
        self.enqueue(item)

    def reserve(self, item: WorkItem) -> None:
        """Count an accepted item against the bounds (TooBusy when one would be passed); `complete` or
        `cancel` releases it."""
        self.check_room(item.stream_id, item.nbytes)
        sid = item.stream_id
        self._chunks[sid] = self._chunks.get(sid, 0) + 1
        self._bytes[sid] = self._bytes.get(sid, 0) + item.nbytes
        self.pending_chunks += 1
        self.pending_bytes += item.nbytes

    def enqueue(self, item: WorkItem) -> None:
        """Queue a reserved, tokenized item behind the stream's earlier ones."""
        sid = item.stream_id
        self.pending_tokens += item.n_tokens
        item.queued = True
        if sid not in self._queues:
            self._queues[sid] = deque()
            self._ready.append(sid)
        self._queues[sid].append(item)

    def check_room(self, stream_id: str, nbytes: int) -> None:
        chunks, nb = self._chunks.get(stream_id, 0), self._bytes.get(stream_id, 0)
        if chunks + 1 > self.max_pending_chunks_per_stream or nb + nbytes > self.max_pending_bytes_per_stream:
            raise TooBusy(
                f"stream {stream_id!r} has {chunks} chunks ({nb} bytes) waiting, the most is "
                f"{self.max_pending_chunks_per_stream} chunks ({self.max_pending_bytes_per_stream} bytes); "
                "wait for acks before sending more"
            )
        if self.pending_chunks + 1 > self.max_pending_chunks or self.pending_bytes + nbytes > self.max_pending_bytes:
            raise TooBusy(
                f"the engine has {self.pending_chunks} chunks ({self.pending_bytes} bytes) waiting; retry shortly"
            )

    def has_work(self) -> bool:
        return bool(self._ready)

    def schedule(self, max_streams: int | None = None, exclude: set[str] | frozenset = frozenset()) -> StepPlan:
        """Take the next step's work: round-robin over streams, up to the token and stream budgets.

        Streams in `exclude` (those of a step still running) are passed over and keep their turn.
        """
        limit = min(self.max_step_streams, max_streams or self.max_step_streams)
        budget = self.max_step_tokens
        plan: list[StreamWork] = []
        passed: list[str] = []
        again: list[str] = []  # served, with tokens left: back of the line, not served twice in one step
        while self._ready and len(plan) < limit and budget > 0:
            sid = self._ready.popleft()
            if sid in exclude:
                passed.append(sid)
                continue
            queue = self._queues[sid]
            slices = []
            while queue and budget >= 0:
                item = queue[0]
                left = item.n_tokens - item.taken
                if slices and left > budget:
                    break  # it would not complete here: it waits, so the step ends at a chunk boundary
                take = min(left, budget)
                if take == 0 and left > 0:
                    break  # budget spent; the rest of this item waits
                slices.append(Slice(item, item.taken, item.taken + take))
                item.taken += take
                budget -= take
                if item.taken < item.n_tokens:
                    break
                queue.popleft()
            plan.append(StreamWork(sid, slices))
            if queue:
                again.append(sid)
            else:
                del self._queues[sid]
        self._ready.extend(again)
        self._ready.extendleft(reversed(passed))
        return StepPlan(plan)

    def complete(self, item: WorkItem) -> None:
        """An item is applied (or failed): release its share of the bounds."""
        sid = item.stream_id
        self._chunks[sid] -= 1
        self._bytes[sid] -= item.nbytes
        if not self._chunks[sid]:
            del self._chunks[sid], self._bytes[sid]
        self.pending_chunks -= 1
        self.pending_bytes -= item.nbytes
        self.pending_tokens -= item.n_tokens

    def cancel(self, stream_id: str, items: list[WorkItem]) -> None:
        """Forget a stream's unfinished items (queued or in a failed step); the caller fails their futures."""
        if self._queues.pop(stream_id, None) is not None:
            self._ready.remove(stream_id)
        for item in items:
            self.complete(item)
