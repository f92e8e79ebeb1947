"""Scheduler: token budget, order within a stream, round-robin fairness, splitting, bounded queues."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamret.engine.scheduler import Scheduler, WorkItem, fair_shares
from streamret.engine.segments import StepSpans
from streamret.engine.text import TextPiece, TextSnapshot
from streamret.errors import TooBusy


def item(sid: str, n: int, seq: int = 1, pieces: list[int] | None = None, nbytes: int | None = None,
         group: str = "", split_after: bool = False) -> WorkItem:
    pieces = pieces or ([n] if n else [])
    ends = np.cumsum(pieces, dtype=np.int64)
    tp = [TextPiece("x" * k, 0, k) for k in pieces]
    return WorkItem(sid, seq, np.arange(n, dtype=np.int64) + 1000 * seq, tp, ends, TextSnapshot(b"", 0),
                    n if nbytes is None else nbytes, group=group, split_after=split_after)


def sched(**kw) -> Scheduler:
    args = dict(max_step_tokens=100, max_step_streams=8, max_pending_chunks_per_stream=8,
                max_pending_bytes_per_stream=10_000, max_pending_chunks=64, max_pending_bytes=100_000)
    args.update(kw)
    return Scheduler(**args)


def drain(s: Scheduler) -> list:
    steps = []
    while s.has_work():
        plan = s.schedule()
        for w in plan.work:
            for sl in w.slices:
                if sl.completes:
                    s.complete(sl.item)
        steps.append(plan)
    return steps


def test_pending_chunks_of_a_stream_are_concatenated_in_order():
    s = sched()
    items = [item("a", 10, seq=i) for i in (1, 2, 3)]
    for it in items:
        s.add(it)
    (plan,) = drain(s)
    (w,) = plan.work
    assert [sl.item.seq for sl in w.slices] == [1, 2, 3]
    assert np.array_equal(w.tokens(), np.concatenate([it.tokens for it in items]))


def test_long_chunk_is_split_across_steps_in_order():
    s = sched(max_step_tokens=64)
    big = item("a", 150, pieces=[100, 50])
    s.add(big)
    steps = drain(s)
    assert [p.n_tokens for p in steps] == [64, 64, 22]
    got = np.concatenate([w.tokens() for p in steps for w in p.work])
    assert np.array_equal(got, big.tokens)
    # the piece that straddles steps reports its first and last token exactly once
    spans = [sp for p in steps for w in p.work for sp in w.spans()]
    assert [(sp.n_tokens, sp.first, sp.last) for sp in spans] == [
        (64, True, False), (36, False, True), (28, True, False), (22, False, True)
    ]
    assert [sl.completes for p in steps for w in p.work for sl in w.slices] == [False, False, True]


def test_round_robin_serves_every_stream_within_a_bounded_number_of_steps():
    s = sched(max_step_tokens=30, max_step_streams=2)
    s.add(item("hog", 1000, nbytes=1))
    for sid in "abcd":
        s.add(item(sid, 5))
    steps = drain(s)
    first_step = {w.stream_id: i for i, p in reversed(list(enumerate(steps))) for w in p.work}
    assert max(first_step[sid] for sid in "abcd") <= 2  # 5 streams, 2 per step: everyone by step 3
    for p in steps:
        assert p.n_tokens <= 30 and len(p.work) <= 2


def test_zero_token_items_keep_their_place():
    s = sched()
    s.add(item("a", 0, seq=1))
    s.add(item("a", 4, seq=2))
    (plan,) = drain(s)
    assert [(sl.item.seq, sl.start, sl.end) for sl in plan.work[0].slices] == [(1, 0, 0), (2, 0, 4)]


def test_bounded_queues_raise_too_busy():
    s = sched(max_pending_chunks_per_stream=2)
    s.add(item("a", 1, seq=1))
    s.add(item("a", 1, seq=2))
    with pytest.raises(TooBusy, match="'a' has 2 chunks"):
        s.add(item("a", 1, seq=3))
    s.add(item("b", 1))  # other streams still get in
    s = sched(max_pending_bytes=100)
    s.add(item("a", 1, nbytes=60))
    with pytest.raises(TooBusy, match="retry shortly"):
        s.add(item("b", 1, nbytes=60))
    drain(s)
    s.add(item("b", 1, nbytes=60))  # room again once applied
    assert s.pending_bytes == 60


def test_cancel_releases_everything():
    s = sched()
    its = [item("a", 200, seq=1), item("a", 5, seq=2)]
    for it in its:
        s.add(it)
    s.schedule()  # takes part of the first item
    s.cancel("a", its)
    assert not s.has_work() and s.pending_chunks == 0 and s.pending_bytes == 0 and s.pending_tokens == 0


def test_streams_of_a_running_step_are_passed_over_and_keep_their_turn():
    s = sched(max_step_tokens=10)
    for sid in "abc":
        s.add(item(sid, 10))
        s.add(item(sid, 10, seq=2))
    first = s.schedule(max_streams=1)
    assert [w.stream_id for w in first.work] == ["a"]
    second = s.schedule(max_streams=1, exclude={"a"})
    assert [w.stream_id for w in second.work] == ["b"]
    third = s.schedule(max_streams=2, exclude={"b"})  # a is free again; c waited longest
    assert [(w.stream_id, w.n_tokens) for w in third.work] == [("c", 5), ("a", 5)]  # the budget, shared
    assert [w.stream_id for w in s.schedule(exclude={"c"}).work] == ["b", "a"]  # b had waited longest


# ---- fair batching: a stream's share of a step, and round-robin over groups (tenants)


def test_fair_shares_water_fills_and_gives_leftovers_to_the_first_in_line():
    assert fair_shares([5, 1000], 30) == [5, 25]  # the small demand is met, the big one takes the rest
    assert fair_shares([100, 100, 100], 10) == [4, 3, 3]  # 10 = 3 * 3 + 1: the first in line gets the extra
    assert fair_shares([2, 50, 50], 1000) == [2, 50, 50]  # everything fits
    assert fair_shares([], 10) == []
    with pytest.raises(ValueError, match="budget must be >= 0 tokens, got -1"):
        fair_shares([1], -1)


@given(st.lists(st.integers(0, 300), max_size=40), st.integers(0, 2000))
@settings(max_examples=200, deadline=None)
def test_fair_shares_is_work_conserving_and_max_min_fair(demands, budget):
    shares = fair_shares(demands, budget)
    assert sum(shares) == min(budget, sum(demands))
    assert all(0 <= s <= d for s, d in zip(shares, demands))
    short = [s for s, d in zip(shares, demands) if s < d]
    if short:  # whoever did not get all it asked for got at least as much as anyone else, give or take one
        assert min(short) >= max(shares) - 1


def test_many_busy_streams_share_a_step_instead_of_one_filling_it():
    # 100 streams with 200 tokens each, a 1000-token step of at most 64 streams: the old scheduler gave
    # the first five streams 200 tokens each; now the step packs 64 streams of 15 or 16 tokens
    s = sched(max_step_tokens=1000, max_step_streams=64, max_pending_chunks=200, max_pending_bytes=10**6)
    for i in range(100):
        s.add(item(f"s{i}", 200))
    plan = s.schedule()
    assert len(plan.work) == 64
    assert plan.n_tokens == 1000
    assert {w.n_tokens for w in plan.work} == {15, 16}
    second = s.schedule()  # the 36 streams that were not served come first in the next step
    assert [w.stream_id for w in second.work[:36]] == [f"s{i}" for i in range(64, 100)]


def test_a_lone_busy_stream_still_fills_the_step():
    s = sched(max_step_tokens=100)
    s.add(item("a", 1000))
    plan = s.schedule()
    assert [(w.stream_id, w.n_tokens) for w in plan.work] == [("a", 100)]
    s.add(item("b", 5))  # a small chunk arrives: it gets all it needs, the busy stream the rest
    plan = s.schedule()
    assert sorted((w.stream_id, w.n_tokens) for w in plan.work) == [("a", 95), ("b", 5)]


def test_per_stream_cap_limits_a_share_even_when_alone():
    s = sched(max_step_tokens=100, max_stream_step_tokens=30)
    s.add(item("a", 100))
    steps = drain(s)
    assert [p.n_tokens for p in steps] == [30, 30, 30, 10]
    s.add(item("a", 100, seq=2))
    s.add(item("b", 100))
    assert [w.n_tokens for w in s.schedule().work] == [30, 30]
    with pytest.raises(ValueError, match="max_stream_step_tokens must be >= 1 or None"):
        sched(max_stream_step_tokens=0)


def test_a_draining_step_takes_at_most_that_many_chunks_of_a_stream_and_the_rest_makes_the_next():
    """draining_step_chunks=2: while fewer tokens wait than a step holds, each stream gives a step its first two
    queued chunks (a split chunk's rest counting as one); the chunks after them make the next step, in order."""
    s = sched(max_step_tokens=100, draining_step_chunks=2)
    for sid in ("a", "b"):
        for seq in (1, 2, 3, 4):
            s.add(item(sid, 10, seq=seq))
    assert s.queued_tokens == 80
    plan = s.schedule()
    assert {w.stream_id: [sl.item.seq for sl in w.slices] for w in plan.work} == {"a": [1, 2], "b": [1, 2]}
    assert s.queued_tokens == 40
    plan = s.schedule()
    assert {w.stream_id: [sl.item.seq for sl in w.slices] for w in plan.work} == {"a": [3, 4], "b": [3, 4]}
    assert s.queued_tokens == 0 and not s.has_work()
    for seq in (5, 6, 7):  # while chunks are being cut (the engine says draining=False) the step stays whole
        s.add(item("a", 10, seq=seq))
    assert [sl.item.seq for sl in s.schedule(draining=False).work[0].slices] == [5, 6, 7]


def test_a_draining_cap_leaves_a_deep_queue_and_a_lone_stream_to_the_fair_shares():
    """Once the queue holds a step's tokens or more the cap is off: a stream alone with work still fills the whole
    step (a long document), and a chunk longer than its share is still split; zero-token items ride along."""
    s = sched(max_step_tokens=100, draining_step_chunks=1)
    s.add(item("a", 150, seq=1))
    for seq in (2, 3, 4):
        s.add(item("a", 40, seq=seq))
    plan = s.schedule()  # 270 queued: the whole budget
    assert [(sl.item.seq, sl.start, sl.end) for sl in plan.work[0].slices] == [(1, 0, 100)]
    plan = s.schedule()  # 170 queued: the fair share again, several chunks
    assert [(sl.item.seq, sl.start, sl.end) for sl in plan.work[0].slices] == [(1, 100, 150), (2, 0, 40)]
    plan = s.schedule()  # 80 queued: one chunk
    assert [(sl.item.seq, sl.start, sl.end) for sl in plan.work[0].slices] == [(3, 0, 40)]
    s.add(item("a", 0, seq=5))  # no tokens (a flush that completed nothing): it goes with the chunk before it
    plan = s.schedule()
    assert [(sl.item.seq, sl.start, sl.end) for sl in plan.work[0].slices] == [(4, 0, 40), (5, 0, 0)]
    assert not s.has_work() and s.queued_tokens == 0
    with pytest.raises(ValueError, match="draining_step_chunks must be >= 1 or None"):
        sched(draining_step_chunks=0)


def test_queued_tokens_count_what_is_queued_through_takes_and_cancels():
    s = sched(max_step_tokens=25)
    s.add(item("a", 30))
    s.add(item("b", 12))
    s.schedule()
    assert s.queued_tokens == sum(s._queued_tokens.values()) == 42 - 25
    s.cancel("a", [])
    assert s.queued_tokens == sum(s._queued_tokens.values())


def test_round_robin_over_groups_then_over_their_streams():
    # tenant A has 100 busy streams, queued first; tenant B's one small chunk arrives last
    s = sched(max_step_tokens=400, max_step_streams=8, max_pending_chunks=200, max_pending_bytes=10**6)
    for i in range(100):
        s.add(item(f"a{i}", 200, group="A"))
    s.add(item("b0", 8, group="B"))
    plan = s.schedule()
    ids = [w.stream_id for w in plan.work]
    assert ids[:3] == ["a0", "b0", "a1"]  # A, B, then A again (B has no second stream)
    assert len(ids) == 8
    served = {w.stream_id: w.n_tokens for w in plan.work}
    assert served["b0"] == 8  # B's whole chunk runs in the first step
    # two groups with several streams each alternate; within a group streams take turns
    s = sched(max_step_tokens=1000, max_step_streams=4)
    for sid, g in [("a0", "A"), ("a1", "A"), ("a2", "A"), ("b0", "B"), ("b1", "B")]:
        s.add(item(sid, 50, group=g))
    assert [w.stream_id for w in s.schedule().work] == ["a0", "b0", "a1", "b1"]
    assert [w.stream_id for w in s.schedule().work] == ["a2"]


def test_group_token_split_is_fair_across_groups_before_streams():
    # A has 3 busy streams, B one: the step is halved between the groups, then A's half among its streams
    s = sched(max_step_tokens=120, max_step_streams=8)
    for sid in ("a0", "a1", "a2"):
        s.add(item(sid, 1000, group="A"))
    s.add(item("b0", 1000, group="B"))
    shares = {w.stream_id: w.n_tokens for w in s.schedule().work}
    assert shares == {"a0": 20, "b0": 60, "a1": 20, "a2": 20}


def test_a_group_whose_share_runs_out_keeps_its_streams_turn():
    # a 4-token step: groups A and B get 2 each; A's third stream gets nothing and is first next time
    s = sched(max_step_tokens=4, max_step_streams=8)
    for sid in ("a0", "a1", "a2"):
        s.add(item(sid, 10, group="A"))
    s.add(item("b0", 10, group="B"))
    first = s.schedule()
    assert sorted(w.stream_id for w in first.work) == ["a0", "a1", "b0"]
    assert first.n_tokens == 4
    assert s.schedule().work[0].stream_id == "a2"


def test_cancel_removes_a_stream_from_its_group_line():
    s = sched()
    s.add(item("a", 10, group="A"))
    s.add(item("b", 10, group="B"))
    s.cancel("a", [])
    assert [w.stream_id for w in s.schedule().work] == ["b"]
    assert not s.has_work()


@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(0, 2), st.integers(0, 60)), min_size=1, max_size=40),
    st.integers(1, 50), st.integers(1, 6), st.one_of(st.none(), st.integers(1, 20)), st.randoms(),
    st.one_of(st.none(), st.integers(1, 40)), st.one_of(st.none(), st.integers(1, 60)), st.floats(0.0, 1.0),
)
@settings(max_examples=300, deadline=None)
def test_any_schedule_keeps_order_and_runs_every_token_once(adds, budget, streams, cap, rnd, pad, whole, splits):
    """Whatever the groups, budget, cap, stream limit, running steps, padding filled (buckets of `pad` tokens),
    split (first chunks up to `whole` tokens given first, or not) and chunks after which a step may go on into the
    next (`split_after`, a share `splits` of them): each stream's tokens reach the steps exactly once and in order,
    every step keeps its bounds, a step that completes a stream's chunk ends at a chunk boundary of that stream
    unless every chunk it completes is split_after, everything is eventually served, and in a step of several
    streams each gets its first chunk whole or at least `whole` tokens of it (without a cap)."""
    s = sched(max_step_tokens=budget, max_step_streams=streams, max_stream_step_tokens=cap,
              max_pending_chunks_per_stream=100, max_pending_chunks=1000, max_pending_bytes=10**6,
              fill_to=None if pad is None else buckets_of(pad), whole_chunk_tokens=whole)
    expected: dict[str, list[np.ndarray]] = {}
    for stream, group, n in adds:
        sid = f"s{stream}"
        seq = len(expected.setdefault(sid, [])) + 1
        it = item(sid, n, seq=seq, group=f"g{group if stream % 2 else 0}", split_after=rnd.random() < splits)
        expected[sid].append(it.tokens)
        s.add(it)
    got: dict[str, list[np.ndarray]] = {}
    running: set[str] = set()
    for _ in range(10_000):
        if not s.has_work():
            break
        plan = s.schedule(max_streams=rnd.randint(1, streams), exclude=running)
        assert plan.n_tokens <= budget and len(plan.work) <= streams
        assert not {w.stream_id for w in plan.work} & running
        with_tokens = [w for w in plan.work if w.n_tokens]
        if whole is not None and cap is None and len(with_tokens) > 1:  # a first chunk that was short enough: whole
            assert all(w.slices[0].end == w.slices[0].item.n_tokens or w.slices[0].end - w.slices[0].start >= whole
                       for w in with_tokens), plan.work
        for w in plan.work:
            assert cap is None or w.n_tokens <= cap
            assert w.n_tokens == sum(sl.end - sl.start for sl in w.slices)
            assert all(sl.completes for sl in w.slices[:-1]), w.slices
            assert w.slices[-1].completes or all(sl.item.split_after for sl in w.slices[:-1]), w.slices
            assert len({id(sl.item) for sl in w.slices}) == len(w.slices)  # one slice a chunk
            got.setdefault(w.stream_id, []).append(w.tokens() if w.slices else np.zeros(0, np.int64))
            for sl in w.slices:
                if sl.completes:
                    s.complete(sl.item)
        running = {w.stream_id for w in plan.work} if rnd.random() < 0.5 else set()
    assert not s.has_work() and s.pending_tokens == 0 and s.pending_chunks == 0
    for sid, parts in expected.items():
        assert np.array_equal(np.concatenate(got.get(sid, []) + [np.zeros(0, np.int64)]), np.concatenate(parts))


def reference_spans(it: WorkItem, start: int, end: int) -> list[tuple[int, int, bool, bool]]:
    """(piece index, tokens, first, last) of a slice, by scanning every piece of the item."""
    ends = np.cumsum([0] + [len(p.text) for p in it.pieces]).tolist()
    out = []
    for i, (a, b) in enumerate(zip(ends[:-1], ends[1:])):
        if b < start or a > end:
            continue
        n = max(0, min(b, end) - max(a, start))
        if a < b:
            first, last = start <= a < end, start < b <= end
        else:
            first = last = start <= a < end or a == end == it.n_tokens
        if n or first or last:
            out.append((i, n, first, last))
    return out


@given(st.lists(st.integers(0, 12), min_size=1, max_size=30), st.lists(st.integers(1, 25), min_size=1, max_size=10))
@settings(max_examples=200, deadline=None)
def test_spans_of_split_items_match_a_scan_of_every_piece(pieces, budgets):
    """The spans of a slice (found by bisection over the item's pieces) are those a scan of all pieces
    finds, each piece's first and last token reported once, and step_spans' arrays are those of its spans."""
    n = sum(pieces)
    s = sched(max_step_tokens=budgets[0])
    it = item("a", n, pieces=pieces) if n else item("a", 0, pieces=pieces)
    it.pieces = [dataclasses.replace(p, text=chr(97 + i % 26) * len(p.text), starts_segment=i % 3 == 1,
                                     ends_segment=i % 2 == 0)  # texts and segment flags that differ
                 for i, p in enumerate(it.pieces)]
    it.set_tokens(it.tokens, it.piece_ends)
    s.add(it)
    index = {id(p): i for i, p in enumerate(it.pieces)}
    firsts, lasts, got = [], [], [0] * len(pieces)
    step = 0
    while s.has_work():
        s.max_step_tokens = budgets[step % len(budgets)]
        (w,) = s.schedule().work
        spans, arrays = w.spans(), w.step_spans()
        expected = StepSpans.of([spans])
        for field in ("lens", "per_stream", "cut_before", "cut_after", "last", "facts"):
            np.testing.assert_array_equal(getattr(arrays, field), getattr(expected, field))
        assert arrays.text == expected.text
        (sl,) = w.slices
        assert [(index[id(sp.piece)], sp.n_tokens, sp.first, sp.last) for sp in spans] == reference_spans(
            it, sl.start, sl.end)
        for sp in spans:
            got[index[id(sp.piece)]] += sp.n_tokens
            firsts += [index[id(sp.piece)]] * sp.first
            lasts += [index[id(sp.piece)]] * sp.last
        if sl.completes:
            s.complete(sl.item)
        step += 1
    assert got == pieces
    assert firsts == lasts == list(range(len(pieces)))


def varied(it: WorkItem, seed: int) -> WorkItem:
    """The item with piece texts and segment flags that differ from piece to piece."""
    it.pieces = [dataclasses.replace(p, text=chr(97 + (i + seed) % 26) * len(p.text),
                                     starts_segment=(i + seed) % 3 == 1, ends_segment=(i + seed) % 2 == 0)
                 for i, p in enumerate(it.pieces)]
    it.set_tokens(it.tokens, it.piece_ends)
    return it


@given(st.lists(st.lists(st.lists(st.integers(0, 9), max_size=8), min_size=1, max_size=3), min_size=1, max_size=5),
       st.lists(st.integers(1, 40), min_size=1, max_size=6))
@settings(max_examples=150, deadline=None)
def test_a_step_spans_arrays_are_those_of_its_streams_spans(streams, budgets):
    """A plan's step_spans (one set of array operations for all its streams' slices, whole and split, with
    pieces without tokens) are `StepSpans.of` the spans of the streams that run tokens, stream after stream."""
    s = sched(max_step_tokens=budgets[0])
    for i, items in enumerate(streams):
        for seq, pieces in enumerate(items, 1):
            s.add(varied(item(f"s{i}", sum(pieces), seq, pieces=pieces), 3 * i + seq))
    step = 0
    while s.has_work():
        s.max_step_tokens = budgets[step % len(budgets)]
        plan = s.schedule()
        arrays, expected = plan.step_spans(), StepSpans.of([w.spans() for w in plan.work if w.n_tokens])
        for field in ("lens", "per_stream", "cut_before", "cut_after", "last", "facts"):
            np.testing.assert_array_equal(getattr(arrays, field), getattr(expected, field))
        assert arrays.text == expected.text
        for w in plan.work:
            for sl in w.slices:
                if sl.completes:
                    s.complete(sl.item)
        step += 1


def test_piece_layout_needs_one_end_per_piece():
    from streamret.engine.scheduler import PieceLayout

    pieces = [TextPiece("ab", 0, 2), TextPiece(" c", 2, 4)]
    layout = PieceLayout.of(pieces, np.array([2, 4]))
    assert (layout.starts, layout.ends, layout.lens.tolist()) == ([0, 2], [2, 4], [2, 2])
    with pytest.raises(ValueError, match="1 piece ends for 2 pieces"):
        PieceLayout.of(pieces, np.array([4]))


def test_a_step_that_completes_chunks_of_a_stream_ends_at_a_chunk_boundary():
    """A chunk behind a completed one in the same step is taken only whole: the stream's state after the step is
    the state after exactly its applied chunks, which is what its durable record must hold (issue 15, item 1).
    Only a stream's first chunk in a step may be split (a chunk longer than what is left, or the rest of one)."""
    s = sched(max_step_tokens=50)
    items = [item("a", n, seq=i) for i, n in enumerate([30, 15, 30, 70, 10], 1)]
    for it in items:
        s.add(it)
    steps = drain(s)
    got = [[(sl.item.seq, sl.start, sl.end) for w in p.work for sl in w.slices] for p in steps]
    assert got == [[(1, 0, 30), (2, 0, 15)], [(3, 0, 30)], [(4, 0, 50)], [(4, 50, 70), (5, 0, 10)]]
    for p in steps:
        slices = [sl for w in p.work for sl in w.slices]
        assert all(sl.completes for sl in slices) or len(slices) == 1
    # one stream is served at most once per step, even with budget left
    assert all(len({w.stream_id for w in p.work}) == len(p.work) for p in steps)


def test_a_share_goes_on_into_the_next_chunk_after_chunks_that_need_no_boundary():
    """Two streams of 17-token chunks sharing steps of 32 tokens (a batch job's 64 KiB chunks of about 17 k tokens
    in a GPU step of 32 k): at chunk boundaries each takes 16 of a chunk, then the 1 left alone, and every other
    step holds 2 tokens; where no record will be written (split_after) every step but the last holds 32. A chunk
    that asks for a record (split_after False) still ends its stream's work in the step that completes it."""
    def steps(split_after: bool) -> list[int]:
        s = sched(max_step_tokens=32)
        for sid in "ab":
            for seq in range(1, 5):
                s.add(item(sid, 17, seq=seq, split_after=split_after))
        return [p.n_tokens for p in drain(s)]

    assert steps(False) == [32, 2] * 4
    assert steps(True) == [32] * 4 + [8]
    s = sched(max_step_tokens=32)
    for seq, (n, split_after) in enumerate([(10, True), (10, False), (20, True)], 1):
        s.add(item("a", n, seq=seq, split_after=split_after))
    got = [[(sl.item.seq, sl.start, sl.end) for w in p.work for sl in w.slices] for p in drain(s)]
    assert got == [[(1, 0, 10), (2, 0, 10)], [(3, 0, 20)]]  # not (3, 0, 12): chunk 2 asks for its record


def test_a_plan_counts_the_streams_with_work_and_those_it_could_pick():
    """StepPlan.waiting / runnable: what the engine's wide-step counters (issue 14) compare a step's width to."""
    s = sched(max_step_streams=4)
    for sid in "abcdef":
        s.add(item(sid, 10))
    plan = s.schedule(exclude={"a", "b", "zz"})  # a and b run in the step still in flight; zz has no work
    assert (plan.waiting, plan.runnable) == (6, 4)
    assert [w.stream_id for w in plan.work] == ["c", "d", "e", "f"]
    plan = s.schedule()
    assert (plan.waiting, plan.runnable) == (2, 2)


def buckets_of(multiple: int):
    return lambda t: -(-t // multiple) * multiple


def test_a_step_takes_queued_tokens_into_its_padding_without_breaking_chunk_boundaries():
    """Buckets of 64 tokens and a budget of 128: a's fair share (64) ends inside its 100-token chunk and b's
    stops at a chunk boundary (10 of 64), so the step holds 74 tokens and is padded to 128. Filling, a's slice
    is extended to its chunk's end (100 of it: 110 tokens, still the 128 bucket); b, whose slice completed its
    chunk, takes only whole chunks, and its next (100) does not fit what is left (18)."""
    def plan_of(fill_to):
        s = sched(max_step_tokens=128, fill_to=fill_to)
        s.add(item("a", 100))
        s.add(item("b", 10, seq=1))
        s.add(item("b", 100, seq=2))
        plan = s.schedule()
        return [(w.stream_id, [(sl.item.seq, sl.start, sl.end) for sl in w.slices]) for w in plan.work], s

    unfilled, _ = plan_of(None)
    assert unfilled == [("a", [(1, 0, 64)]), ("b", [(1, 0, 10)])]
    filled, s = plan_of(buckets_of(64))
    assert filled == [("a", [(1, 0, 100)]), ("b", [(1, 0, 10)])]
    assert s.queued_tokens == 100 and s.schedule().n_tokens == 100  # b's second chunk: the next step


def test_padding_is_filled_within_the_stream_cap_and_not_while_draining():
    s = sched(max_step_tokens=128, fill_to=buckets_of(64), max_stream_step_tokens=70)
    s.add(item("a", 100))
    s.add(item("b", 10, seq=1))
    s.add(item("b", 100, seq=2))
    assert [w.n_tokens for w in s.schedule().work] == [70, 10]  # a: its 64, then 6 to its cap of 70
    s = sched(max_step_tokens=128, fill_to=buckets_of(64), draining_step_chunks=1)
    for seq in (1, 2):
        s.add(item("a", 30, seq=seq))
    assert s.schedule(draining=True).n_tokens == 30  # the draining cap's one chunk stays one
    assert s.schedule().n_tokens == 30


def test_filled_padding_goes_to_the_streams_of_the_step_in_service_order():
    """a and b each stop at a chunk boundary (50 of their 64 shares), the step is padded from 100 to 128: the 28
    tokens of room go to a first (its next whole chunk, 20), and what is left (8) holds no chunk of b's."""
    s = sched(max_step_tokens=128, fill_to=buckets_of(64))
    for sid in "ab":
        for seq, n in enumerate((50, 20, 10), 1):
            s.add(item(sid, n, seq=seq))
    assert [(w.stream_id, w.n_tokens) for w in s.schedule().work] == [("a", 70), ("b", 50)]


def test_a_step_filled_to_its_budget_takes_whole_chunks_past_its_padding():
    """EngineConfig.step_fill="budget": a and b stop at a chunk boundary (50 of their 75 shares), 100 tokens of a
    150 budget; the padding to 128 holds no whole 40-token chunk after what is left (28), the budget does (50):
    a, first in line, takes its next chunk."""
    def plan_of(fill_to):
        s = sched(max_step_tokens=150, fill_to=fill_to)
        for sid in "ab":
            for seq, n in enumerate((50, 40), 1):
                s.add(item(sid, n, seq=seq))
        return [(w.stream_id, w.n_tokens) for w in s.schedule().work]

    assert plan_of(None) == plan_of(buckets_of(64)) == [("a", 50), ("b", 50)]
    assert plan_of(lambda n: 150) == [("a", 90), ("b", 50)]


def test_step_fill_names_its_choices_when_wrong():
    from streamret.engine import EngineConfig
    from streamret.engine.scheduler import fill_target

    assert fill_target("off", 100, 4096) is None
    assert [fill_target("padding", 100, step)(5000) for step in (4096, 1024)] == [8192, 5120]  # the graphs' buckets
    assert fill_target("budget", 100, 4096)(7) == 100
    with pytest.raises(ValueError, match="step_fill='full'; use one of"):
        EngineConfig(step_fill="full")
    for step in (32, 3000, 6144):
        with pytest.raises(ValueError, match=f"graph_token_step={step}: a power of two of at least 64"):
            EngineConfig(graph_token_step=step)


def test_whole_first_chunks_pick_the_streams_whose_chunks_fit_and_the_next_goes_first():
    """Fair shares alone cut every chunk past the water level (100 short documents of 929 tokens into a 32,768-token
    step: 100 cut ones); with whole_chunk_tokens 1,024 a step takes the 35 whose chunks fit, each whole, and the 36th
    leads the next step; with 512 (32,768 / 64) it takes 64, each cut at 512."""
    def loaded(**kw) -> Scheduler:
        s = sched(max_step_tokens=32_768, max_step_streams=256, max_pending_chunks=1000, max_pending_bytes=10**7,
                  **kw)
        for i in range(100):
            s.add(item(f"d{i}", 929))
        return s

    cut = loaded().schedule()
    assert len(cut.work) == 100 and not any(sl.completes for w in cut.work for sl in w.slices)
    s = loaded(whole_chunk_tokens=1024)
    first = s.schedule()
    assert [w.stream_id for w in first.work] == [f"d{i}" for i in range(35)]
    assert all(len(w.slices) == 1 and w.slices[0].whole for w in first.work) and first.n_tokens == 35 * 929
    assert s.schedule().work[0].stream_id == "d35"
    wide = loaded(whole_chunk_tokens=512).schedule()
    assert len(wide.work) == 64 and all(w.n_tokens == 512 for w in wide.work)


def test_whole_first_chunks_leave_the_rest_of_the_budget_to_fair_shares_and_split_a_lone_huge_chunk():
    s = sched(max_step_tokens=100, whole_chunk_tokens=100)
    s.add(item("a", 30, seq=1))
    s.add(item("a", 30, seq=2))
    s.add(item("b", 50))
    s.add(item("c", 40))  # 30 + 50 + 40 > 100: c waits, first in line
    plan = s.schedule()
    assert [(w.stream_id, w.n_tokens) for w in plan.work] == [("a", 30), ("b", 50)]  # a's second chunk: no room
    assert s.schedule().work[0].stream_id == "c"
    alone = sched(max_step_tokens=100, whole_chunk_tokens=100)
    alone.add(item("big", 250))
    assert [p.n_tokens for p in drain(alone)] == [100, 100, 50]


def test_whole_first_chunks_still_serve_another_group_in_the_first_step():
    """With tenants, the round-robin over groups still comes first: one group's 40 busy streams do not keep the
    other group's single chunk out of the next step."""
    s = sched(max_step_tokens=1_000, max_step_streams=64, max_pending_chunks=1000, max_pending_bytes=10**7,
              whole_chunk_tokens=1_000)
    for i in range(40):
        s.add(item(f"busy{i}", 90, group="t1"))
    s.add(item("lone", 90, group="t2"))
    plan = s.schedule()
    assert "lone" in [w.stream_id for w in plan.work] and len(plan.work) == 11
    assert all(w.slices[0].whole for w in plan.work)


def test_whole_chunk_tokens_must_be_positive():
    with pytest.raises(ValueError, match="whole_chunk_tokens must be >= 1 or None"):
        sched(whole_chunk_tokens=0)
