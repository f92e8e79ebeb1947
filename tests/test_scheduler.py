"""Scheduler: token budget, order within a stream, round-robin fairness, splitting, bounded queues."""

import numpy as np
import pytest

from streamret.engine.scheduler import Scheduler, WorkItem
from streamret.engine.text import TextPiece, TextSnapshot
from streamret.errors import TooBusy


def item(sid: str, n: int, seq: int = 1, pieces: list[int] | None = None, nbytes: int | None = None) -> WorkItem:
    pieces = pieces or ([n] if n else [])
    ends = np.cumsum(pieces, dtype=np.int64)
    tp = [TextPiece("x" * k, 0, k) for k in pieces]
    return WorkItem(sid, seq, np.arange(n, dtype=np.int64) + 1000 * seq, tp, ends, TextSnapshot(b"", 0),
                    n if nbytes is None else nbytes)


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
    assert [w.stream_id for w in third.work] == ["c"]  # the budget (10 tokens) is spent on c
    assert [w.stream_id for w in s.schedule(exclude={"c"}).work] == ["a"]


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
