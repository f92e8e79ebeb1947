"""SegmentTracker: booking a step's spans at once (add_spans) is booking them one by one (add)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamret.engine.kept_pool import KeptPool
from streamret.engine.scheduler import Span
from streamret.engine.segments import (
    _SCANNED,
    _WORD,
    SegmentTracker,
    _most_relevant_first,
    add_step_spans,
    keep_segments,
    mmr_pick,
    relevance,
    salience,
    select_summary,
    word_counts,
)
from streamret.engine.text import TextPiece

D = 4


@st.composite
def span_steps(draw):
    """Spans of consecutive pieces (a piece may be split over several spans, or have no tokens), their
    sums, and a cut of the span list into steps."""
    spans, offset = [], 0
    for _ in range(draw(st.integers(0, 12))):
        text = draw(st.sampled_from(["", " ", "  word", "\nline", " end.", "x" * 30, " é€"]))
        nb = len(text.encode())
        ends = draw(st.booleans())
        carry = draw(st.integers(0, len(text))) if ends else 0  # the end of the text starts the next segment
        piece = TextPiece(text, offset, offset + nb, draw(st.booleans()), ends, carry,
                          len(text[len(text) - carry :].encode()))
        offset += nb
        parts = draw(st.lists(st.integers(0, 5), min_size=1, max_size=3))
        for j, n in enumerate(parts):
            spans.append(Span(piece, n, j == 0, j == len(parts) - 1))
    sums = np.asarray(draw(st.lists(st.lists(st.floats(-4, 4), min_size=D, max_size=D), min_size=len(spans),
                                    max_size=len(spans))), dtype=np.float64).reshape(len(spans), D)
    cuts = sorted(draw(st.lists(st.integers(0, len(spans)), max_size=4)))
    ran = draw(st.lists(st.booleans(), min_size=len(cuts) + 1, max_size=len(cuts) + 1))
    return spans, sums, [0, *cuts, len(spans)], ran


def tracker() -> SegmentTracker:
    return SegmentTracker(D, max_kept=8, max_text_bytes=12)


@given(span_steps())
@settings(max_examples=300, deadline=None)
def test_add_spans_books_what_add_books(case):
    spans, sums, bounds, ran = case
    one, many = tracker(), tracker()
    closed_one, closed_many = [], []
    for (a, b), has_sums in zip(zip(bounds[:-1], bounds[1:]), ran):
        for sp, row in zip(spans[a:b], range(a, b)):
            closed_one += one.add(sp.piece, sums[row] if has_sums else np.zeros(D), sp.n_tokens, sp.first, sp.last)
        closed_many += many.add_spans(spans[a:b], sums[a:b] if has_sums else None)
    assert [(c.text, c.start_byte, c.end_byte, c.pool_count) for c in closed_many] == [
        (c.text, c.start_byte, c.end_byte, c.pool_count) for c in closed_one]
    for c1, c2 in zip(closed_one, closed_many):
        np.testing.assert_allclose(c2.pool_sum, c1.pool_sum, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(many.open_sum, one.open_sum, rtol=1e-12, atol=1e-12)
    assert (many.open_count, many.open_start, many.open_end, many.open_text) == (
        one.open_count, one.open_start, one.open_end, one.open_text)


@given(st.lists(span_steps(), min_size=1, max_size=4))
@settings(max_examples=150, deadline=None)
def test_a_step_of_several_streams_books_what_each_would_alone(cases):
    """add_step_spans over several streams (one reduceat for the step) = add per span, stream by stream;
    each stream's first step continues a segment left open before."""
    alone, together = [tracker() for _ in cases], [tracker() for _ in cases]
    for i, (spans, sums, bounds, _) in enumerate(cases):  # an earlier step leaves a segment open
        a = bounds[1]
        for t in (alone[i], together[i]):
            for sp, row in zip(spans[:a], range(a)):
                t.add(sp.piece, sums[row], sp.n_tokens, sp.first, sp.last)
    rest = [(spans[bounds[1]:], sums[bounds[1]:]) for spans, sums, bounds, _ in cases]
    expected = []
    for t, (spans, sums) in zip(alone, rest):
        expected.append([c for sp, row in zip(spans, sums)
                         for c in t.add(sp.piece, row, sp.n_tokens, sp.first, sp.last)])
    got = add_step_spans(together, [sp for sp, _ in rest], np.concatenate([sm for _, sm in rest]))
    for t1, t2, e, g in zip(alone, together, expected, got):
        assert [(c.text, c.start_byte, c.end_byte, c.pool_count) for c in g] == [
            (c.text, c.start_byte, c.end_byte, c.pool_count) for c in e]
        for c1, c2 in zip(e, g):
            np.testing.assert_allclose(c2.pool_sum, c1.pool_sum, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(t2.open_sum, t1.open_sum, rtol=1e-12, atol=1e-12)
        assert (t2.open_count, t2.open_start, t2.open_text) == (t1.open_count, t1.open_start, t1.open_text)


def test_add_spans_refuses_sums_of_the_wrong_shape():
    piece = TextPiece(" a.", 0, 3, False, True)
    with pytest.raises(ValueError, match=r"sums of shape \(1, 3\) for 1 spans.*d_model=4"):
        tracker().add_spans([Span(piece, 2, True, True)], np.zeros((1, 3)))


def keep_by_rebuilding(kept: list, segs: list, embeddings: np.ndarray, references: np.ndarray,
                       max_kept: int) -> list:
    """The kept set after new segments, computed the plain way, segment after segment: (start, end, text,
    embedding) of the kept ones and each new one, or when they are more than `max_kept` the `keep_to` most
    relevant of them to that segment's reference, ties to the earlier (the rows stay in stream order)."""
    rows = list(kept)
    for (text, start, end), e, reference in zip(segs, embeddings, references):
        rows.append((start, end, text, e))
        if len(rows) > max_kept:
            scores = relevance(salience(np.stack([r[3] for r in rows]), reference), [r[2] for r in rows])
            rows = [rows[i] for i in sorted(np.argsort(-scores, kind="stable")[: KeptPool(max_kept).keep_to])]
    return rows


@given(st.lists(st.integers(0, 7), min_size=1, max_size=12), st.integers(0, 2**32 - 1))
@settings(max_examples=150, deadline=None)
def test_keep_many_keeps_the_most_salient_whatever_the_places(step_sizes, seed):
    rng = np.random.default_rng(seed)
    t = SegmentTracker(D, max_kept=5)
    expected: list = []
    offset = 0
    for k in step_sizes:
        # texts of 0 to 9 words: penalties from 0.5 to none
        segs = [(" ".join([f"s{offset + i}"] * ((offset + i) * 7 % 10)), offset + i, offset + i + 1) for i in range(k)]
        offset += k
        emb = rng.standard_normal((k, 3)).astype(np.float32)
        if rng.random() < 0.3:
            emb[:] = emb[:1]  # ties
        stream = rng.standard_normal(3).astype(np.float32)  # one reference for all: as a flush closes segments
        expected = keep_by_rebuilding(expected, segs, emb, [stream] * k, 5)
        if k:
            t.keep_many([text for text, _, _ in segs], np.array([[a, b] for _, a, b in segs], np.int64), emb, stream)
        n = len(t.kept_text)
        kept_embeddings = t.kept_embeddings if t.kept_embeddings is not None else np.zeros((0, 3), np.float32)
        kept_bytes = [tuple(b) for b in t.kept_bytes[:n].tolist()] if n else []
        got = sorted(zip(kept_bytes, t.kept_text, kept_embeddings[:n]), key=lambda r: r[0])
        assert [(b, txt) for b, txt, _ in got] == [((s, e), txt) for s, e, txt, _ in sorted(expected)]
        for (_, _, e1), (_, _, _, e2) in zip(got, sorted(expected, key=lambda r: r[0])):
            np.testing.assert_array_equal(e1, e2)


@given(st.lists(st.integers(1, 9), min_size=1, max_size=8), st.integers(0, 6), st.integers(0, 2**32 - 1))
@settings(max_examples=150, deadline=None)
def test_a_trackers_summary_is_select_summary_of_its_segments(step_sizes, k, seed):
    """SegmentTracker.summary (the kept arrays, penalties as kept) picks what select_summary picks from the
    tracker's Segments (penalties worked out again from the texts), in document order, with equal fields."""
    rng = np.random.default_rng(seed)
    t = SegmentTracker(D, max_kept=6)
    offset = 0
    for n in step_sizes:
        order = rng.permutation(n)  # kept out of document order
        segs = [(" ".join([f"w{offset + i}"] * int(rng.integers(0, 10))), offset + i, offset + i + 1) for i in order]
        offset += n
        emb = rng.standard_normal((n, 3)).astype(np.float32)
        if rng.random() < 0.3:
            emb[:] = emb[:1]  # ties
        t.keep_many([x for x, _, _ in segs], np.array([[a, b] for _, a, b in segs], np.int64), emb,
                    rng.standard_normal(3).astype(np.float32))
        stream = rng.standard_normal(3).astype(np.float32)
        got, want = t.summary(stream, k, 0.6), select_summary(t.segments(stream), k, 0.6)
        fields = [[(x.text, x.start_byte, x.end_byte, x.score) for x in picks] for picks in (got, want)]
        assert fields[0] == fields[1]
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g.embedding, w.embedding)


@given(st.integers(1, 40), st.integers(1, 8), st.floats(0.0, 1.0), st.integers(0, 2**32 - 1))
@settings(max_examples=200, deadline=None)
def test_mmr_pick_is_the_greedy_rule_over_the_whole_similarity_matrix(n, k, mmr_lambda, seed):
    """mmr_pick reads only the picked rows of the similarity matrix; its picks are those of the rule written out
    over the whole matrix: score_i = lambda * salience_i - (1 - lambda) * max over picked j of cos(i, j), the first
    highest score taken (ties in row order), with duplicate rows and equal saliences among the cases. The values
    are small multiples of 1/4, so that every similarity is exact whichever way it is summed and a tie is a tie."""
    rng = np.random.default_rng(seed)
    emb = rng.integers(-2, 3, size=(n, 5)).astype(np.float32) / 4
    if rng.random() < 0.3:
        emb[rng.integers(0, n, size=n // 2)] = emb[0]
    sal = rng.integers(-4, 5, size=n) / 4
    sim = emb.astype(np.float64) @ emb.T.astype(np.float64)
    want: list[int] = []
    while len(want) < min(k, n):
        best, best_score = None, -np.inf
        for i in range(n):
            if i in want:
                continue
            score = mmr_lambda * sal[i] - (1 - mmr_lambda) * (max(sim[i, j] for j in want) if want else 0.0)
            if best is None or score > best_score:
                best, best_score = i, score
        want.append(best)
    assert mmr_pick(emb, sal, k, mmr_lambda) == sorted(want)
    assert mmr_pick(emb, sal, 0, mmr_lambda) == []


# letters, digits, other word characters, separators, NUL (ASCII up to there), then numerics, marks, surrogates
WORDY = "ab Z9_'-.,\t\n\0’é²½\u0301中٣\U0001d400\ud800Ⅷß"


@given(st.lists(st.text(alphabet=WORDY, max_size=40) | st.text(alphabet=WORDY[:13], max_size=40)
                | st.text(max_size=20) | st.just("word " * 200), max_size=6))
@settings(max_examples=400, deadline=None)
def test_word_counts_count_what_the_regex_finds(texts):
    assert word_counts(texts).tolist() == [len(_WORD.findall(t, 0, _SCANNED)) for t in texts]


@given(st.lists(st.lists(st.integers(0, 7), min_size=1, max_size=8), min_size=1, max_size=6), st.integers(0, 2**32 - 1),
       st.booleans())
@settings(max_examples=150, deadline=None)
def test_keep_segments_keeps_for_each_stream_what_it_would_alone(steps_per_stream, seed, shared):
    """Several streams (each its own max_kept; with `shared`, those of one max_kept in one pool, as an engine's
    are) kept in one call per step, each segment with its own reference: each keeps what the plain rule, segment
    after segment, keeps; a stream without new segments in a step is left as it is."""
    rng = np.random.default_rng(seed)
    limits = [1 + 3 * (i % 3) for i in range(len(steps_per_stream))]  # 1, 4, 7: trimmed to 1, 3, 6 on overflow
    pools = {m: KeptPool(m) for m in set(limits)} if shared else {}
    trackers = [SegmentTracker(D, max_kept=m, pool=pools.get(m)) for m in limits]
    expected: list[list] = [[] for _ in trackers]
    offset = 0
    for step in range(max(map(len, steps_per_stream))):
        sizes = [sizes[step] if step < len(sizes) else 0 for sizes in steps_per_stream]
        texts, spans = [], []
        for k in sizes:
            texts += [" ".join([f"s{offset + i}"] * ((offset + i) * 7 % 10)) for i in range(k)]
            spans += [[offset + i, offset + i + 1] for i in range(k)]
            offset += k
        emb = rng.standard_normal((len(texts), 3)).astype(np.float32)
        if rng.random() < 0.3:
            emb[:] = emb[:1]  # ties
        references = rng.standard_normal((len(texts), 3)).astype(np.float32)  # each stream's where each closed
        bounds = np.concatenate([[0], np.cumsum(sizes)]).tolist()
        keep_segments(trackers, bounds, texts, np.array(spans, np.int64).reshape(-1, 2), emb, references)
        for i, (t, a, b) in enumerate(zip(trackers, bounds[:-1], bounds[1:])):
            expected[i] = keep_by_rebuilding(expected[i], [(texts[j], *spans[j]) for j in range(a, b)], emb[a:b],
                                             references[a:b], t.max_kept)
            n = len(t.kept_text)
            got = sorted(zip(t.kept_bytes[:n].tolist() if n else [], t.kept_text, range(n)))
            assert [(tuple(b), txt) for b, txt, _ in got] == [((s, e), txt) for s, e, txt, _ in sorted(expected[i])]
            for (_, _, row), (_, _, _, e) in zip(got, sorted(expected[i], key=lambda r: r[0])):
                np.testing.assert_array_equal(t.kept_embeddings[row], e)


@given(st.lists(st.tuples(st.sampled_from([0.5, -0.25, 0.0, -0.0, 1.0, float("nan"), 0.1, -1e-9]),
                          st.integers(0, 5)), max_size=40),
       st.booleans())
def test_most_relevant_first_is_the_lexsort_by_score_then_start(rows, distinct):
    """The one sort of the scores that keep_segments ranks by gives np.lexsort's order (score highest first, equal
    scores by the earlier start), with ties, NaNs and signed zeros among the cases; `distinct` spreads the scores
    apart so that the sort alone decides."""
    score = np.array([s for s, _ in rows], np.float64)
    starts = np.array([b for _, b in rows], np.int64)
    if distinct:
        score = score + np.arange(len(rows)) * 1e-3
    np.testing.assert_array_equal(_most_relevant_first(score, starts), np.lexsort((starts, -score)))


def test_a_pool_gives_a_slot_back_when_its_tracker_is_collected_and_keeps_rows_as_it_grows():
    pool = KeptPool(2)
    emb = np.eye(3, dtype=np.float32)

    def keep(t: SegmentTracker, start: int) -> None:
        t.keep_many([f"w{start}", f"w{start + 1}"], np.array([[start, start + 1], [start + 1, start + 2]]), emb[:2],
                    emb[0])

    trackers = [SegmentTracker(D, max_kept=2, pool=pool) for _ in range(20)]
    for i, t in enumerate(trackers):
        keep(t, 10 * i)  # 20 slots: the pool grew from 8 to 16 to 32 on the way
    assert pool.capacity == 32 and sorted(t.slot for t in trackers) == list(range(20))
    for i, t in enumerate(trackers):
        assert t.kept_text == [f"w{10 * i}", f"w{10 * i + 1}"] and t.kept_bytes[:2, 0].tolist() == [10 * i, 10 * i + 1]
        np.testing.assert_array_equal(t.kept_embeddings, emb[:2])
    freed = trackers[3].slot
    del trackers[3]  # collected at once (no cycle): its slot is free, its texts gone
    assert pool.texts[freed] == []
    again = SegmentTracker(D, max_kept=2, pool=pool)
    keep(again, 500)
    assert again.slot == freed and again.kept_text == ["w500", "w501"] and pool.capacity == 32
    with pytest.raises(ValueError, match="max_kept=3 in a pool of max_kept=2"):
        SegmentTracker(D, max_kept=3, pool=pool)
    with pytest.raises(ValueError, match="width 4 for a pool of width 3"):
        SegmentTracker(D, max_kept=2, pool=pool).keep_many(["x"], np.array([[0, 1]]), np.ones((1, 4), np.float32),
                                                           np.ones(4, np.float32))
