"""Continuous batching: which streams' tokens go into the next model step.

Each stream has a FIFO of accepted chunks (`WorkItem`s, once tokenized). A step picks streams in
round-robin order, over groups (tenants) first and then over each group's streams, up to the stream
limit, and splits its token budget among them max-min fairly (`fair_shares`): when many streams have
work a step packs many of them, a small chunk runs whole at its first turn, and a stream alone fills
the step. A stream's share takes its pending tokens in order (several chunks concatenated); a chunk
longer than the share is split and its rest waits for a later step, the stream's state carrying over.
Only a stream's first chunk in a step may be split: a later one that would not complete there waits
whole, so a step that completes chunks of a stream leaves its state at a chunk boundary, which is what
a durable record must hold (the state after exactly the chunks up to applied_seq), and what a stream's reads
describe. Where no record will want the state between chunks (`WorkItem.split_after`: an engine without a durable
store, a batch job's temporary streams) the share goes on into the next chunk, until a read asks for the state
between them: two streams of 64 KiB chunks (a batch job's: about 17 k tokens) sharing a 32 k step otherwise took
16 k of a chunk each and, in the next step, the few hundred left; at 1,024 streams a share of about 290 tokens
stopped at the end of each 500-token chunk, and steps held about three quarters of their budget.
A served stream with tokens left goes to the back of its group's line, and a served group to the back
of the groups' line, so every stream is served within a bounded number of steps.
Queues are bounded per stream and in total: a chunk counts from its acceptance (`reserve`, which raises
`TooBusy` instead of growing memory), and joins its stream's queue once tokenized (`enqueue`).
"""

from __future__ import annotations

import itertools
import time
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import cached_property, partial

import numpy as np

from .bounds import QueueBounds
from .segments import StepSpans
from .text import TEXT_LEN, TextPiece, TextSnapshot, piece_columns, pieces_of_columns


@dataclass(eq=False)
class WorkItem:
    """One accepted append (or flush) of one stream: its bytes, then (once the tokenize stage cut and tokenized
    them) its text pieces and their tokens."""

    stream_id: str
    seq: int | None  # None: a flush without data (does not advance seq)
    tokens: np.ndarray | None  # int64 [n]; None until tokenized
    pieces: list[TextPiece] | None  # None for an accepted item: the tokenize stage gives its layout (`layout.pieces`)
    piece_ends: np.ndarray | None  # token offset in `tokens` where each piece ends
    text_after: TextSnapshot | None  # the stream's text tail once this item is applied; None until cut
    nbytes: int
    future: Future = field(default_factory=Future)
    taken: int = 0  # tokens handed to steps so far
    durable: bool = False  # write the stream's record before the ack, whatever the policy
    # nothing will want its stream's state at its end (its engine keeps no records, or its stream is a batch job's
    # temporary and it asks for none; a read that waits for a chunk boundary clears it): a step that completes it
    # may go on into the stream's next item and split that one
    split_after: bool = False
    # where its text starts (tokenize_stage.py): the stream's front when it was accepted with no earlier item
    # unapplied (text_before), else where `prev`, the item accepted before it, ends; prev is let go once it is cut
    text_before: TextSnapshot | None = None
    prev: WorkItem | None = None
    raw: bytes = b""  # the appended bytes, until cut
    ending: str = ""  # "flush" or "close": the text front hands out its tail too
    accepted_before: int = 0  # the stream's accepted seq before it: where it goes back to if the item fails
    queued: bool = False  # in its stream's queue (tokenized, and every earlier item queued)
    group: str = ""  # the scheduler's fairness group of the stream (e.g. its tenant)
    # when it was accepted, when a tokenize thread began and ended its batch (0: it was not cut there) and when it
    # was queued after tokenizing (time.monotonic: one clock for every process of the host), for the engine's stats
    # of where an item's time goes (EngineCore.stats: recent_items)
    accepted_at: float = field(default_factory=time.monotonic)
    cutting_at: float = 0.0
    cut_at: float = 0.0
    queued_at: float = 0.0

    def __post_init__(self) -> None:
        self.set_tokens(self.tokens, self.piece_ends)

    def set_tokens(self, tokens: np.ndarray | None, piece_ends: np.ndarray | None,
                   layout: PieceLayout | None = None) -> None:
        """Set the tokens and the layout of the pieces over them (what steps read: see `PieceLayout`);
        pass a layout made beforehand to keep its making out of a lock held here."""
        self.tokens, self.piece_ends = tokens, piece_ends
        self.n_tokens = 0 if tokens is None else len(tokens)
        self.layout = layout if layout is not None else PieceLayout.of(self.pieces, piece_ends)


@dataclass(frozen=True)
class PieceLayout:
    """Where an item's pieces lie in its tokens, worked out once per item (when it is tokenized) rather than
    in each step that runs it: token ranges (lists: bisect beats numpy on a few), token counts, and the
    spans of a step that runs the whole item."""

    starts: list[int]
    ends: list[int]
    lens: np.ndarray  # int64 [pieces]
    # what a step that runs the whole item books (`StepSpans`): where its pieces cut segments, their text
    # facts and their text, worked out here (on a tokenize thread) rather than on the step thread
    step_spans: StepSpans
    char_offsets: np.ndarray  # int64 [pieces + 1]: where each piece's text starts in step_spans.text
    texts: list[str]  # the item's pieces' texts and numbers (`piece_columns`): what its pieces are made of
    numbers: np.ndarray
    given: list[TextPiece] | None = field(default=None, repr=False)  # the item's pieces, when they came made

    @cached_property
    def pieces(self) -> list[TextPiece]:
        """The item's pieces (`Slice.spans` and `full_spans` read them): made here, when first read, if a
        tokenizer process sent their columns only."""
        return self.given if self.given is not None else pieces_of_columns(self.texts, self.numbers)

    @classmethod
    def of(cls, pieces: list[TextPiece], piece_ends: np.ndarray | None) -> PieceLayout:
        if piece_ends is None or not len(piece_ends):  # not tokenized yet, or no pieces
            return _NO_PIECES
        ends = np.asarray(piece_ends, dtype=np.int64)
        if len(ends) != len(pieces):
            raise ValueError(f"{len(ends)} piece ends for {len(pieces)} pieces; pass one end per piece")
        return cls.of_items([pieces], np.diff(ends, prepend=0))[0]

    @classmethod
    def of_items(cls, items: Sequence[list[TextPiece]], lens: np.ndarray) -> list[PieceLayout]:
        """`of` each item (its pieces), from the tokens of every piece (int64 [pieces], item after item), with
        array work over all the items' pieces at once (what the tokenize stage makes for a batch)."""
        texts, numbers, facts = piece_columns(list(itertools.chain.from_iterable(items)))
        return cls.of_columns(texts, numbers, facts, np.fromiter(map(len, items), np.int64, len(items)), lens,
                              items)

    @classmethod
    def of_columns(cls, texts: list[str], numbers: np.ndarray, facts: np.ndarray, counts: np.ndarray,
                   lens: np.ndarray, items: Sequence[list[TextPiece]] | None = None) -> list[PieceLayout]:
        """`of_items` from the pieces' columns (`piece_columns`, every item's pieces one after the other; counts:
        int64 [items], the pieces of each); items: their pieces when they are made already."""
        lens = np.asarray(lens, dtype=np.int64)
        first = np.cumsum(counts) - counts  # each item's first piece
        step_spans = StepSpans.of_columns(texts, numbers, facts, counts, lens)

        def within_items(sizes: np.ndarray) -> np.ndarray:
            """Per piece, the sum of the sizes of its item's pieces up to it (where it ends in its item)."""
            total = np.cumsum(sizes)
            return total - np.repeat(np.concatenate([[0], total])[first], counts)

        ends = within_items(lens)  # in tokens
        chars = within_items(facts[:, TEXT_LEN])
        char_offsets = np.insert(chars, first, 0)  # item k's [0, ...piece ends] at first[k] + k
        starts_list, ends_list = (ends - lens).tolist(), ends.tolist()
        return [cls(starts_list[a : a + n], ends_list[a : a + n], spans.lens, spans,  # copies: see StepSpans
                    char_offsets[a + k : a + k + n + 1].copy(), texts[a : a + n], numbers[a : a + n].copy(),
                    items[k] if items is not None else None)
                for k, (a, n, spans) in enumerate(zip(first.tolist(), counts.tolist(), step_spans))]

    @cached_property
    def full_spans(self) -> list[Span]:
        """The spans of a step that runs the whole item, as objects (`Slice.spans`: a flush's pieces without
        tokens, and the tests); made when first read, as steps book from `step_spans`."""
        return [Span(p, n, True, True) for p, n in zip(self.pieces, self.lens.tolist())]


_NO_PIECES = PieceLayout.of_items([[]], np.zeros(0, np.int64))[0]


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

    @property
    def whole(self) -> bool:
        return self.start == 0 and self.end == self.item.n_tokens

    def spans(self) -> list[Span]:
        """The pieces this slice touches; a piece without tokens is reported in the slice at its offset."""
        item, start, end = self.item, self.start, self.end
        layout = item.layout
        if start == 0 and end == item.n_tokens:  # the whole item in one step: the common case
            return layout.full_spans
        # only the pieces that overlap [start, end] (ends and starts are sorted): a long item split over
        # many steps costs each step its own pieces, not all of the item's; and of those only the ones at
        # the slice's edges need a span of their own: a piece wholly inside is its whole-item span
        starts, ends, n_tokens = layout.starts, layout.ends, item.n_tokens
        lo, hi = bisect_left(ends, start), bisect_right(starts, end)

        def inside(i: int) -> bool:
            a = starts[i]
            return start <= a and ends[i] <= end and (a < end or a == end == n_tokens)

        def edge(i: int, out: list[Span]) -> None:
            a, b = starts[i], ends[i]
            n = max(0, min(b, end) - max(a, start))
            if a < b:
                first, last = start <= a < end, start < b <= end
            else:
                first = last = start <= a < end or a == end == n_tokens
            if n or first or last:
                out.append(Span(layout.pieces[i], n, first, last))

        out: list[Span] = []
        while lo < hi and not inside(lo):
            edge(lo, out)
            lo += 1
        mid = hi
        while mid > lo and not inside(mid - 1):
            mid -= 1
        out += layout.full_spans[lo:mid]  # between two inside pieces every piece is inside (sorted bounds)
        for i in range(mid, hi):
            edge(i, out)
        return out


@dataclass
class StreamWork:
    """Everything one stream runs in a step: slices of its queued items, in order."""

    stream_id: str
    slices: list[Slice]
    n_tokens: int = -1  # computed from the slices unless given

    def __post_init__(self) -> None:
        if self.n_tokens < 0:
            self.n_tokens = sum([s.end - s.start for s in self.slices])

    def tokens(self) -> np.ndarray:
        return np.concatenate([s.item.tokens[s.start : s.end] for s in self.slices])

    def spans(self) -> list[Span]:
        return [span for s in self.slices for span in s.spans()]

    def step_spans(self) -> StepSpans:
        """What booking this stream's spans of the step reads, as arrays (`step_spans`)."""
        return step_spans([self])


def step_spans(works: list[StreamWork]) -> StepSpans:
    """`StepSpans.of` the spans of these streams' slices, stream after stream, read from their items' layouts
    (no span objects): each slice's pieces are found by bisection (a slice of a long item costs its own
    pieces, not the item's), then the tests `Slice.spans` makes of each piece (does the slice hold tokens
    of it, its first one, its last one) run as array operations over all the step's pieces at once."""
    starts: list[int] = []
    lens, cut_before, cut_after, facts = [], [], [], []
    slices = []  # (layout, its first piece, pieces, start, end, item tokens)
    per_work = []
    for w in works:
        per_work.append(len(w.slices))
        for sl in w.slices:
            layout, n_tokens = sl.item.layout, sl.item.n_tokens
            if sl.start == 0 and sl.end == n_tokens:
                lo, hi = 0, len(layout.starts)
            else:
                lo, hi = bisect_left(layout.ends, sl.start), bisect_right(layout.starts, sl.end)
            whole = layout.step_spans
            starts += layout.starts[lo:hi]
            lens.append(layout.lens[lo:hi])
            cut_before.append(whole.cut_before[lo:hi])
            cut_after.append(whole.cut_after[lo:hi])
            facts.append(whole.facts[lo:hi])
            slices.append((layout, lo, hi - lo, sl.start, sl.end, n_tokens))
    if not starts:
        return StepSpans.of([[] for _ in works])
    counts = np.array([n for _, _, n, _, _, _ in slices])
    start, end, total = (np.repeat(np.array([sl[k] for sl in slices], np.int64), counts) for k in (3, 4, 5))
    a = np.array(starts, np.int64)
    b = a + np.concatenate(lens)
    n = np.maximum(0, np.minimum(b, end) - np.maximum(a, start))
    first = (start <= a) & ((a < end) | ((a == b) & (a == end) & (end == total)))
    last = np.where(a < b, (start < b) & (b <= end), first)
    keep = np.flatnonzero((n > 0) | first | last)
    # each slice's text: that of the pieces it books (consecutive), cut out of its item's text
    slice_of = np.repeat(np.arange(len(slices)), counts)
    booked = keep[last[keep]]
    bounds = np.searchsorted(slice_of[booked], np.arange(len(slices) + 1)).tolist()
    shifts = (np.array([lo for _, lo, _, _, _, _ in slices]) - (np.cumsum(counts) - counts)).tolist()
    booked_l, texts = booked.tolist(), []
    for (layout, _, _, _, _, _), i, j, shift in zip(slices, bounds[:-1], bounds[1:], shifts):
        if j > i:  # item pieces booked_l[i] + shift to booked_l[j - 1] + shift
            chars = layout.char_offsets
            texts.append(layout.step_spans.text[chars[booked_l[i] + shift] : chars[booked_l[j - 1] + shift + 1]])
    work_of = np.repeat(np.repeat(np.arange(len(works)), per_work), counts)[keep]
    return StepSpans(n[keep], np.bincount(work_of, minlength=len(works)), (first & np.concatenate(cut_before))[keep],
                     (last & np.concatenate(cut_after))[keep], last[keep], np.concatenate(facts)[keep], "".join(texts))


@dataclass
class StepPlan:
    work: list[StreamWork]
    waiting: int = 0  # streams with work queued when the step was planned (those of a running step too)
    runnable: int = 0  # of them, those not in a running step: what this step could pick from
    n_tokens: int = field(init=False)

    def __post_init__(self) -> None:
        self.n_tokens = sum(w.n_tokens for w in self.work)

    def step_spans(self) -> StepSpans:
        """What booking the step reads of the streams that run tokens (`step_spans`)."""
        return step_spans([w for w in self.work if w.n_tokens])

    def packed(self) -> tuple[np.ndarray, np.ndarray]:
        """The model's input: the tokens of the streams that have some, in plan order, concatenated with
        one copy (int64 [tokens]), and each such stream's token count (int64 [streams])."""
        ran = [w for w in self.work if w.n_tokens]
        if not ran:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        ids = np.concatenate([s.item.tokens[s.start : s.end] for w in ran for s in w.slices])
        return ids, np.array([w.n_tokens for w in ran], dtype=np.int64)


def fair_shares(demands: list[int], budget: int) -> list[int]:
    """Max-min fair split of `budget` tokens among demands (water filling), in the order given.

    Every demand at or below the water level is met in full; the others get the level, and the
    tokens the level leaves over (fewer than the number of those others) go one each to the first
    of them in the given order (the ones that waited longest). Work-conserving: the shares add up to
    min(budget, sum(demands)).
    """
    if budget < 0:
        raise ValueError(f"budget must be >= 0 tokens, got {budget}")
    if sum(demands) <= budget:
        return list(demands)
    order = sorted(range(len(demands)), key=demands.__getitem__)
    shares = [0] * len(demands)
    left = budget
    for k, i in enumerate(order):
        level = left // (len(order) - k)
        if demands[i] > level:
            rest = sorted(order[k:])  # back to the given order for the leftover tokens
            extra = left - level * len(rest)
            for j, r in enumerate(rest):
                shares[r] = level + (j < extra)
            break
        shares[i] = demands[i]
        left -= demands[i]
    return shares


def fill_target(step_fill: str, budget: int, token_step: int) -> Callable[[int], int] | None:
    """The size `Scheduler` fills a step of n tokens to under EngineConfig.step_fill: its CUDA-graph token bucket
    ("padding"; token_step: EngineConfig.graph_token_step), the budget ("budget"), or no fill ("off": None)."""
    if step_fill == "off":
        return None
    if step_fill == "padding":
        from ..model.graphs import token_bucket  # (torch: not for the scheduler's other users)

        return partial(token_bucket, step=token_step)
    if step_fill == "budget":
        return lambda n: budget
    from .config import STEP_FILLS

    raise ValueError(f"step_fill={step_fill!r}; use one of {STEP_FILLS}")


class Scheduler:
    """Owns the per-stream queues and decides each step's batch.

    Fairness has two levels. Streams belong to groups (a tenant, say; "" when nobody says): a step
    picks streams group by group in round-robin order (one stream of each group in turn, and within a
    group its streams in round-robin order), so one group with many busy streams cannot keep another
    group's single stream out of the next step planned. The step's token budget is then
    split max-min fairly, first among the picked groups, then among each group's picked streams
    (`fair_shares`): a stream with little work gets all of it, the busy ones share the rest equally, and
    a stream alone with work fills the whole step. With one group, a busy stream's share is thus the budget
    over the number of streams with work, and at least budget / max_step_streams (a step picks no more
    streams than that); with several, each group's share is split so among its streams.
    `max_stream_step_tokens` caps any stream's share of a step on top of that (None: no cap beyond the
    fair share). `draining_step_chunks` caps it at that many of the stream's queued chunks while the whole
    queue holds fewer tokens than a step and the caller says so (`schedule`'s draining; EngineConfig's
    draining_step_chunks says why). `fill_to` (the size to fill a step of n tokens to: its padded size as the device
    runs it, or the budget; None: no fill) lets a step take its picked streams' further queued tokens up to it, in
    service order (EngineConfig.step_fill): a stream's turn is not taken, nor another stream picked.
    `whole_chunk_tokens` (EngineConfig.step_whole_chunk_tokens) changes the split: each picked stream is first given
    what is left of its first queued chunk, up to that many tokens (and its demand), and a step picks streams, in
    the same order, only while those fit its budget together; what is left of the budget is then split as above
    over the rest of their demands. The stream that would not fit keeps its turn, first in line. A first chunk of
    at most whole_chunk_tokens then runs whole; with it at most budget / 64, a step still picks at least 64 streams
    whenever that many have work.
    """

    def __init__(
        self, max_step_tokens: int, max_step_streams: int, max_pending_chunks_per_stream: int,
        max_pending_bytes_per_stream: int, max_pending_chunks: int, max_pending_bytes: int,
        max_stream_step_tokens: int | None = None, draining_step_chunks: int | None = None,
        fill_to: Callable[[int], int] | None = None, whole_chunk_tokens: int | None = None,
    ):
        if max_stream_step_tokens is not None and max_stream_step_tokens < 1:
            raise ValueError(
                f"max_stream_step_tokens must be >= 1 or None (the fair share only), got {max_stream_step_tokens}"
            )
        if draining_step_chunks is not None and draining_step_chunks < 1:
            raise ValueError(f"draining_step_chunks must be >= 1 or None (off), got {draining_step_chunks}")
        self.max_step_tokens = max_step_tokens
        self.max_step_streams = max_step_streams
        self.max_stream_step_tokens = max_stream_step_tokens
        self.draining_step_chunks = draining_step_chunks
        self.fill_to = fill_to
        if whole_chunk_tokens is not None and whole_chunk_tokens < 1:
            raise ValueError(f"whole_chunk_tokens must be >= 1 or None (off), got {whole_chunk_tokens}")
        self.whole_chunk_tokens = whole_chunk_tokens
        # accepted, not yet completed: per stream and in total (bounds.py)
        self.bounds = QueueBounds(max_pending_chunks_per_stream, max_pending_bytes_per_stream, max_pending_chunks,
                                  max_pending_bytes)
        self._queues: dict[str, deque[WorkItem]] = {}  # items with tokens not yet handed to a step
        self._queued_tokens: dict[str, int] = {}  # tokens of a stream's queue not yet handed to a step
        self.queued_tokens = 0  # ... of all the queues
        self._group_of: dict[str, str] = {}  # group of each stream with a queue
        self._ready: dict[str, deque[str]] = {}  # per group: its streams with queued items, in service order
        self._groups: deque[str] = deque()  # groups with queued items, in service order
        self.pending_tokens = 0

    def add(self, item: WorkItem) -> None:
        """reserve, then enqueue: for an item tokenized already."""
        self.reserve(item)
        self.enqueue(item)

    def reserve(self, item: WorkItem) -> None:
        """Count an accepted item against the bounds (TooBusy when one would be passed); `complete` or
        `cancel` releases it."""
        self.bounds.reserve(item.stream_id, item.nbytes)

    def enqueue(self, item: WorkItem) -> None:
        """Queue a reserved, tokenized item behind the stream's earlier ones. A stream joins the line of
        the item's group when its queue was empty; while it has a queue it stays in its group."""
        sid = item.stream_id
        self.pending_tokens += item.n_tokens
        item.queued = True
        item.queued_at = time.monotonic()
        queue = self._queues.get(sid)
        if queue is None:
            queue = self._queues[sid] = deque()
            self._queued_tokens[sid] = 0
            group = self._group_of[sid] = item.group
            line = self._ready.get(group)
            if line is None:
                line = self._ready[group] = deque()
                self._groups.append(group)
            line.append(sid)
        queue.append(item)
        self._queued_tokens[sid] += item.n_tokens
        self.queued_tokens += item.n_tokens

    def check_room(self, stream_id: str, nbytes: int) -> None:
        """TooBusy when one more chunk of nbytes would pass a queue bound."""
        self.bounds.check(stream_id, nbytes)

    @property
    def pending_chunks(self) -> int:
        """Chunks accepted and not yet completed."""
        return self.bounds.chunks

    @property
    def pending_bytes(self) -> int:
        return self.bounds.bytes

    def has_work(self) -> bool:
        return bool(self._groups)

    def schedule(self, max_streams: int | None = None, exclude: set[str] | frozenset = frozenset(),
                 draining: bool = True) -> StepPlan:
        """Take the next step's work: streams picked round-robin over groups and within each group, up to
        the stream limit; the token budget split fairly among them (see the class docstring).

        Streams in `exclude` (those of a step still running) are passed over and keep their turn. draining=False
        keeps `draining_step_chunks` out of this step (the engine: while chunks are being cut, more work is on its
        way without this step's acks).
        """
        limit = min(self.max_step_streams, max_streams or self.max_step_streams)
        waiting = len(self._queues)
        runnable = waiting - sum(sid in self._queues for sid in exclude)
        budget = self.max_step_tokens
        cap = self.max_stream_step_tokens
        queued = self._queued_tokens
        chunks = (self.draining_step_chunks if draining and self.draining_step_chunks and self.queued_tokens < budget
                  else None)
        groups: list[str] = []  # picked streams in service order: their group, id and demand
        sids: list[str] = []
        demands: list[int] = []
        passed: dict[str, list[str]] = {}  # per group: streams passed over, to go back in front
        wanting = 0  # picked streams that want tokens: never more than the budget, so each gets one
        firsts: list[int] | None = None if self.whole_chunk_tokens is None else []  # each one's first chunk given
        reserved = 0  # ... and their sum
        pick = self._in_turn(exclude, passed)
        while len(sids) < limit and wanting < budget:
            picked = next(pick, None)
            if picked is None:
                break
            group, sid = picked
            demand = queued[sid] if chunks is None else self._first_chunks(sid, chunks)
            demand = demand if cap is None else min(cap, demand)
            if firsts is not None:
                first = min(demand, self._first_left(sid), self.whole_chunk_tokens, budget)
                if sids and reserved + first > budget:
                    passed.setdefault(group, []).append(sid)  # first in its group's line for the next step
                    break
                firsts.append(first)
                reserved += first
            groups.append(group)
            sids.append(sid)
            demands.append(demand)
            wanting += demand > 0
        split = fair_shares if len(self._groups) == 1 else partial(self._split, groups)
        if firsts is None:
            shares = split(demands, budget)
        else:  # the first chunks given, then the rest of the budget over the rest of the demands
            rest = split([d - f for d, f in zip(demands, firsts)], budget - reserved)
            shares = [f + r for f, r in zip(firsts, rest)]
        taken: list[tuple[str, str, list[Slice]]] = []  # picked streams that run: group, id, slices
        for group, sid, demand, share in zip(groups, sids, demands, shares):
            if demand and not share:  # its group's share ran out before this stream: it keeps its turn
                passed.setdefault(group, []).append(sid)
                continue
            taken.append((group, sid, self._take(sid, share)))  # at most share (a chunk boundary may stop it)
        if self.fill_to is not None and chunks is None:
            self._fill(taken, budget)
        plan: list[StreamWork] = []
        served_groups: dict[str, None] = {}  # ordered set: groups in the order they were first served
        for group, sid, slices in taken:
            plan.append(StreamWork(sid, slices))
            if group not in served_groups:
                served_groups[group] = None
            if self._queues[sid]:
                self._ready[group].append(sid)
            else:
                del self._queues[sid], self._queued_tokens[sid], self._group_of[sid]
        for group, passed_sids in passed.items():
            self._ready[group].extendleft(reversed(passed_sids))
        # served groups go to the back, in the order served; the others keep their place in front
        if served_groups:
            rest = [g for g in self._groups if g not in served_groups]
            self._groups = deque(g for g in (*rest, *served_groups) if self._ready[g])
            for group in served_groups:
                if not self._ready[group]:
                    del self._ready[group]
        return StepPlan(plan, waiting, runnable)

    def _in_turn(self, exclude: set[str] | frozenset, passed: dict[str, list[str]]) -> Iterator[tuple[str, str]]:
        """The streams a step may pick, in service order, as (group, id): with one group (no tenants) its line as
        it stands, with several one stream of each group in turn, round robin, a group coming round again once its
        stream was taken. Streams in `exclude` are passed over into `passed` (per group: to go back in front)."""
        if len(self._groups) == 1:
            group = self._groups[0]
            line = self._ready[group]
            while line:
                sid = line.popleft()
                if sid in exclude:
                    passed.setdefault(group, []).append(sid)
                else:
                    yield group, sid
            return
        cycle = deque(self._groups)
        while cycle:
            group = cycle.popleft()
            line = self._ready[group]
            while line and line[0] in exclude:
                passed.setdefault(group, []).append(line.popleft())
            if line:  # (else nothing more to pick in this group for this step)
                yield group, line.popleft()
                cycle.append(group)

    def _first_left(self, sid: str) -> int:
        """The tokens left of the stream's first queued chunk."""
        item = self._queues[sid][0]
        return item.n_tokens - item.taken

    def _first_chunks(self, sid: str, chunks: int) -> int:
        """The stream's queued tokens in its first `chunks` queued chunks (the rest of a split one counts as one)."""
        queue = self._queues[sid]
        if len(queue) <= chunks:
            return self._queued_tokens[sid]
        return sum(queue[i].n_tokens - queue[i].taken for i in range(chunks))

    @staticmethod
    def _split(groups: list[str], demands: list[int], budget: int) -> list[int]:
        """Each picked stream's tokens: max-min fair over groups, then over each group's streams."""
        members: dict[str, list[int]] = {}  # group -> indices of its picked streams
        for i, group in enumerate(groups):
            members.setdefault(group, []).append(i)
        group_shares = fair_shares([sum(demands[i] for i in idx) for idx in members.values()], budget)
        shares = [0] * len(demands)
        for idx, share in zip(members.values(), group_shares):
            for i, s in zip(idx, fair_shares([demands[i] for i in idx], share)):
                shares[i] = s
        return shares

    def _fill(self, taken: list[tuple[str, str, list[Slice]]], budget: int) -> None:
        """Give the picked streams, in service order, more of their queued tokens up to `fill_to` of the step's
        tokens (at most the budget), each within max_stream_step_tokens, keeping `_take`'s rule that a step
        completing a stream's chunk ends at a chunk boundary of that stream: a stream whose one slice ends inside
        a chunk has that slice extended (and then whole chunks, once it completes), a stream whose slices all
        complete takes whole chunks only."""
        n_tokens = sum(s.end - s.start for _, _, slices in taken for s in slices)
        if not n_tokens:
            return
        room = min(self.fill_to(n_tokens), budget) - n_tokens
        cap = self.max_stream_step_tokens
        for _, sid, slices in taken:
            if room <= 0:
                break
            own = sum(s.end - s.start for s in slices)
            extra = min(room, self._queued_tokens[sid], room if cap is None else cap - own)
            if extra <= 0:
                continue
            more = self._take(sid, extra, whole_only=any(sl.completes for sl in slices))
            room -= sum(s.end - s.start for s in more)
            if slices and more and more[0].item is slices[-1].item:  # the rest of the chunk its slice ended in
                last = slices.pop()
                more[0] = Slice(last.item, last.start, more[0].end)
            slices.extend(more)

    def _take(self, sid: str, share: int, whole_only: bool = False) -> list[Slice]:
        """Slices of the stream's queue, in order, holding at most `share` tokens (and the zero-token items
        they reach); only the first may be split (none with whole_only), or the last too where every item before it
        is `split_after`; a split item's rest stays at the front of the queue."""
        queue = self._queues[sid]
        slices = []
        while queue:
            item = queue[0]
            left = item.n_tokens - item.taken
            if (whole_only or slices and not all(s.item.split_after for s in slices)) and left > share:
                break  # it would not complete behind the others: it waits whole (a chunk boundary)
            take = min(left, share)
            if take == 0 and left > 0:
                break  # share spent; the rest of this item waits
            slices.append(Slice(item, item.taken, item.taken + take))
            item.taken += take
            share -= take
            self._queued_tokens[sid] -= take
            self.queued_tokens -= take
            if item.taken < item.n_tokens:
                break
            queue.popleft()
        return slices

    def complete(self, item: WorkItem) -> None:
        """An item is applied (or failed): release its share of the bounds."""
        self.bounds.release(item.stream_id, item.nbytes)
        self.pending_tokens -= item.n_tokens

    def cancel(self, stream_id: str, items: list[WorkItem]) -> None:
        """Forget a stream's unfinished items (queued or in a failed step); the caller fails their futures."""
        if self._queues.pop(stream_id, None) is not None:
            self.queued_tokens -= self._queued_tokens.pop(stream_id)
            group = self._group_of.pop(stream_id)
            line = self._ready[group]
            line.remove(stream_id)
            if not line:
                del self._ready[group]
                self._groups.remove(group)
        for item in items:
            self.complete(item)
