"""A step's segment runs pooled and embedded by the model runner (on the model's device, in one call) are
what booking the step's spans one by one on the host gives."""

import numpy as np
import pytest
import torch
from streamret_kernels import segment_sum

from streamret.engine.scheduler import Span
from streamret.engine.segments import SegmentTracker, StepSpans, add_step_spans, book_step, step_runs
from streamret.engine.text import TextAssembler
from streamret.engine.worker import ModelRunner
from streamret.model.spec import load_model

TEXTS = [b" One. Two words here. Three", b" and a long sentence without an end", b"\n\nHeading\n\nBody text. Ok."]


def step_spans(device: str) -> tuple:
    """Three streams, each fed some text before the step (a segment is open) and one chunk in it."""
    loaded = load_model("random:tiny", device)
    d = loaded.model.config.d_model
    trackers, spans, tokens = [], [], []
    rng = np.random.default_rng(0)
    for i, text in enumerate(TEXTS):
        assembler = TextAssembler()
        tracker = SegmentTracker(d, max_kept=4)
        tracker.open_sum[:] = rng.standard_normal(d)  # an open segment from earlier steps
        tracker.open_count, tracker.open_start, tracker.open_end = 3, 0, 1
        pieces = assembler.feed(text) + assembler.feed(TEXTS[(i + 1) % 3], flush=True)
        spans.append([Span(p, 1 + j % 3, True, True) for j, p in enumerate(pieces)])
        trackers.append(tracker)
        tokens.append(rng.integers(0, loaded.model.config.vocab_size, sum(s.n_tokens for s in spans[-1])))
    return loaded, trackers, spans, tokens


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no GPU"))])
def test_runner_runs_book_what_spans_booked_on_the_host_book(device):
    loaded, trackers, spans, tokens = step_spans(device)
    rng_pool = np.random.default_rng(1)
    model, runner = loaded.model, ModelRunner(loaded.model, cuda_graphs=False)  # the reference's forward
    host_trackers = [SegmentTracker(t.d_model, max_kept=4, open_sum=t.open_sum.copy(), open_count=t.open_count,
                                    open_start=t.open_start, open_end=t.open_end) for t in trackers]
    lens = np.array([len(t) for t in tokens], dtype=np.int64)
    step = StepSpans.of(spans)
    span_lens = step.lens
    runs = step_runs(trackers, step)
    state = model.init_state(len(tokens))
    pooled_before = torch.from_numpy(rng_pool.standard_normal((len(tokens), model.config.d_model)))
    state.pool_sum += pooled_before.to(state.pool_sum.device)  # tokens the streams pooled in earlier steps
    state.pool_count += 5
    out = runner.run(np.concatenate(tokens), lens, state, runs)
    out.wait()
    booked = book_step(trackers, step, runs, out.open_sums)

    with torch.inference_mode():  # the reference: the same forward, summed per span, booked on the host
        hidden, _ = model(torch.from_numpy(np.concatenate(tokens)).to(model.device), mode="chunkwise",
                          state=model.init_state(len(tokens)), cu_seqlens=torch.from_numpy(
                              np.concatenate([[0], np.cumsum(lens)])), chunk_size=runner.chunk_size)
        span_sums = segment_sum(hidden, torch.from_numpy(np.concatenate([[0], np.cumsum(span_lens)]))).cpu().numpy()
    expected = add_step_spans(host_trackers, spans, span_sums)
    assert sum(map(len, expected)) > 3
    for a, b, want in zip(booked.bounds[:-1], booked.bounds[1:], expected):
        starts, ends = booked.byte_spans[a:b].T.tolist()
        assert list(zip(booked.texts[a:b], starts, ends, booked.counts[a:b].tolist())) == [
            (c.text, c.start_byte, c.end_byte, c.pool_count) for c in want]
        if want:
            emb = runner.embed(torch.from_numpy(np.stack([c.pool_sum for c in want])),
                               torch.tensor([c.pool_count for c in want]))
            np.testing.assert_allclose(out.run_embeddings[booked.runs[a:b]], emb, rtol=1e-4, atol=1e-5)
    # after each run, its stream's embedding: its pool before the step and the step's tokens up to the run's end
    stream_start = np.concatenate([[0], np.cumsum(lens)])
    for i in range(len(tokens)):
        for r in range(runs.first[i], runs.last[i] + 1):
            upto = hidden[stream_start[i] : runs.token_cu[r + 1]].double().sum(0).cpu()
            count = torch.tensor([5 + runs.token_cu[r + 1] - stream_start[i]])
            want = runner.embed((pooled_before[i] + upto)[None], count)
            np.testing.assert_allclose(out.close_embeddings[r], want[0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out.close_embeddings[runs.last[i]], out.embeddings[i], rtol=1e-6, atol=1e-6)
    for t, h in zip(trackers, host_trackers):
        np.testing.assert_allclose(t.open_sum, h.open_sum, rtol=1e-6, atol=1e-6)
        assert (t.open_count, t.open_start, t.open_end, t.open_text) == (
            h.open_count, h.open_start, h.open_end, h.open_text)
