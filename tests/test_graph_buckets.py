"""The CUDA-graph buckets captured at an engine's start cover every step shape the engine can run."""

import itertools

import numpy as np
import pytest

from streamret.engine.config import default_step_tokens
from streamret.model.graphs import all_buckets, padded_inputs, seq_bucket, token_bucket


@pytest.mark.parametrize("step", [4096, 2048, 1024, 64])
def test_every_step_shape_falls_in_a_bucket_captured_at_start(step):
    for max_seq, max_tokens in ((1, 64), (5, 300), (256, 16384), (40, 5000)):
        buckets = set(all_buckets(max_seq, max_tokens, step))
        ns = sorted({1, 2, 3, max_seq // 2 or 1, max_seq})
        ts = sorted({1, 63, 64, 65, 1023, 1025, 2049, 4095, 4096, 4097, 8193, max_tokens // 3 or 1, max_tokens})
        for n, t in itertools.product(ns, ts):
            if n <= max_seq and n <= t <= max_tokens:  # n streams with at least one token each
                assert (seq_bucket(n), token_bucket(t, step)) in buckets, (max_seq, max_tokens, n, t)
        assert len(buckets) == len(all_buckets(max_seq, max_tokens, step))  # each once


def test_token_buckets_are_powers_of_two_up_to_the_step_then_its_multiples():
    assert [token_bucket(t) for t in (1, 65, 3000, 4097, 10_700, 32768)] == [64, 128, 4096, 8192, 12288, 32768]
    assert [token_bucket(t, 1024) for t in (1, 65, 1000, 1025, 3000, 10_700)] == [64, 128, 1024, 2048, 3072, 11264]
    for step in (64, 1024, 2048, 4096):  # never smaller than the tokens, never more than twice them past 64
        for t in range(1, 20_000, 37):
            assert t <= token_bucket(t, step) <= max(64, 2 * t - 1, -(-t // step) * step)


def test_the_engine_takes_the_graphs_default_step():
    from streamret.engine import EngineConfig
    from streamret.model.graphs import TOKEN_STEP

    assert EngineConfig().graph_token_step == TOKEN_STEP


def test_the_default_step_budgets_need_a_graph_for_each_of_few_buckets():
    """Captured at an engine's start: the CPU's budget would need 87 graphs, a GPU's (twice the tokens) 123."""
    assert len(all_buckets(256, default_step_tokens("cpu"))) == 87
    assert len(all_buckets(256, default_step_tokens("cuda"))) == 123


def test_inputs_padded_on_the_host_as_a_graph_holds_them():
    """The padding sequence takes the tokens past T up to the bucket's; the rows after it are empty."""
    tokens = np.arange(1, 101)
    ids, cu = padded_inputs(tokens, np.array([0, 30, 30, 100]))
    assert ids.dtype == np.int64 and cu.dtype == np.int32
    assert len(ids) == token_bucket(100) == 128 and len(cu) == seq_bucket(3) + 1 == 5
    assert np.array_equal(ids[:100], tokens) and not ids[100:].any()
    assert cu.tolist() == [0, 30, 30, 100, 128]
    ids, cu = padded_inputs(np.arange(1, 5001), np.array([0, 5000]), 1024)  # a finer step: 5,120, not 8,192
    assert len(ids) == 5120 and cu.tolist() == [0, 5000, 5120]
