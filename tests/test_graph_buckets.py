"""The CUDA-graph buckets captured at an engine's start cover every step shape the engine can run."""

import itertools

import numpy as np

from streamret.engine.config import default_step_tokens
from streamret.model.graphs import all_buckets, padded_inputs, seq_bucket, token_bucket


def test_every_step_shape_falls_in_a_bucket_captured_at_start():
    for max_seq, max_tokens in ((1, 64), (5, 300), (256, 16384), (40, 5000)):
        buckets = set(all_buckets(max_seq, max_tokens))
        ns = sorted({1, 2, 3, max_seq // 2 or 1, max_seq})
        ts = sorted({1, 63, 64, 65, 4095, 4096, 4097, 8193, max_tokens // 3 or 1, max_tokens})
        for n, t in itertools.product(ns, ts):
            if n <= max_seq and n <= t <= max_tokens:  # n streams with at least one token each
                assert (seq_bucket(n), token_bucket(t)) in buckets, (max_seq, max_tokens, n, t)
        assert len(buckets) == len(all_buckets(max_seq, max_tokens))  # each once


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
