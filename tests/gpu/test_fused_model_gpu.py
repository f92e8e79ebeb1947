"""The fused inference layers and the CUDA-graph forward on the GPU, at real layer widths, against
the same weights in float64 through the plain layers (fresh random weights, ids and states)."""

from __future__ import annotations

import pytest
import torch
from streamret_kernels.utils import poisoned_allocations

from streamret.model.graphs import GraphedForward, padded_inputs
from streamret.model.retnet import PRESETS, RetNetConfig, build_random

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def no_tf32():
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = before


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    assert torch.isfinite(x).all()
    return ((x.double() - ref.double()).norm() / ref.double().norm()).item()


def ragged(cfg: RetNetConfig, lens: list[int], seed: int):
    g = torch.Generator(device="cuda").manual_seed(seed)
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], device="cuda", dtype=torch.int32)
    ids = torch.randint(0, cfg.vocab_size, (sum(lens),), device="cuda", generator=g)
    return ids, cu


LAYOUTS = {"small": PRESETS["small"], "K256V512": RetNetConfig(
    vocab_size=1000, d_model=512, n_layers=2, n_heads=2, head_k_dim=256, head_v_dim=512, ffn_dim=704)}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("fold", ["on", "off"])
def test_fused_float32_matches_float64_plain_layers(monkeypatch, layout, fold):
    monkeypatch.setenv("STREAMRET_NORM_FOLD", fold)
    cfg = LAYOUTS[layout]
    ids, cu = ragged(cfg, [1, 0, 300, 77, 1500], seed=1)
    with torch.inference_mode():
        ref_model = build_random(cfg, seed=2, norm_spread=0.75).cuda().double()
        state = ref_model.init_state(5)
        state.layers = [torch.randn_like(s) * 0.1 for s in state.layers]
        state.positions = torch.tensor([0, 5, 10**9, 3, 77], device="cuda")
        ref, ref_state = ref_model(ids, cu_seqlens=cu, state=state, fused=False)
        model = build_random(cfg, seed=2, norm_spread=0.75).cuda()
        with poisoned_allocations():
            out, new = model(ids, cu_seqlens=cu, state=state, fused=True)
    errs = [rel_err(out, ref), *(rel_err(a, b) for a, b in zip(new.layers, ref_state.layers, strict=True)),
            rel_err(new.pool_sum, ref_state.pool_sum)]
    assert max(errs) <= 1e-4, errs


def assert_graphed_equals_eager(graphed, model, cfg, batches):
    for seed, lens in enumerate(batches):
        ids, cu = ragged(cfg, lens, seed)
        state = model.init_state(len(lens))
        state.layers = [torch.randn_like(s) * 0.1 for s in state.layers]
        state.positions = torch.randint(0, 10**6, (len(lens),), device="cuda")
        with torch.inference_mode():
            ref, ref_state = model(ids, cu_seqlens=cu, state=state)
        out, new = graphed(ids, cu, state)
        # the bucket's shape may pick other tiles and matmul kernels: equal up to bf16 rounding
        assert rel_err(out, ref) <= 1e-2, seed
        for a, b in zip(new.layers, ref_state.layers, strict=True):
            assert rel_err(a, b) <= 1e-2, seed
        assert rel_err(new.pool_sum, ref_state.pool_sum) <= 1e-2, seed
        assert torch.equal(new.positions, ref_state.positions) and torch.equal(new.pool_count, ref_state.pool_count)


def test_graphed_forward_equals_the_eager_forward():
    cfg = PRESETS["small"]
    model = build_random(cfg, seed=3).cuda().to(torch.bfloat16)
    graphed = GraphedForward(model)
    assert_graphed_equals_eager(graphed, model, cfg, [[100, 0, 900, 31], [1, 1, 1000, 29], [4000, 17]])
    assert sorted(graphed.graphs) == [(4, 4096), (8, 2048)], list(graphed.graphs)  # the first two share one


def test_a_finer_token_step_pads_to_its_own_buckets_and_equals_the_eager_forward():
    """EngineConfig.graph_token_step=1024: 5,000 tokens run in a graph of 5,120 (8,192 at the default step), and
    inputs padded on the host for that step run there too."""
    cfg = PRESETS["small"]
    model = build_random(cfg, seed=7).cuda().to(torch.bfloat16)
    graphed = GraphedForward(model, token_step=1024)
    assert_graphed_equals_eager(graphed, model, cfg, [[4000, 1000], [1500, 17]])
    assert sorted(graphed.graphs) == [(4, 2048), (4, 5120)], list(graphed.graphs)
    ids, cu = ragged(cfg, [4000, 1000], 1)
    state = model.init_state(2)
    hidden, _ = graphed(ids, cu, state)
    ids_pad, cu_pad = (torch.from_numpy(a).cuda() for a in padded_inputs(ids.cpu().numpy(), cu.cpu().numpy(), 1024))
    assert len(ids_pad) == 5120
    padded_hidden, _ = graphed(ids_pad, cu_pad, state, fresh_state=False, tokens=len(ids))
    assert torch.equal(padded_hidden, hidden)


def test_graphs_are_captured_again_after_clear():
    """clear() (new weights, or a capture at start that failed) then captures afresh: PyTorch refuses a capture
    into a pool whose graphs are all gone, so clear takes a new pool."""
    cfg = PRESETS["small"]
    model = build_random(cfg, seed=6).cuda().to(torch.bfloat16)
    graphed = GraphedForward(model)
    assert_graphed_equals_eager(graphed, model, cfg, [[100, 0, 900, 31]])
    graphed.clear()
    assert_graphed_equals_eager(graphed, model, cfg, [[100, 0, 900, 31], [3000, 17]])
    graphed.clear()
    torch.cuda.empty_cache()
    assert_graphed_equals_eager(graphed, model, cfg, [[5]])
    assert graphed.captures == 4


def test_graphs_captured_at_start_share_their_buffers_and_equal_the_eager_forward():
    """Every bucket captured up front (as an engine does at its start): the graphs share their state and
    output buffers and their work memory, so all of them together take about what the largest one does."""
    from streamret.model.graphs import all_buckets

    cfg = PRESETS["small"]
    model = build_random(cfg, seed=4).cuda().to(torch.bfloat16)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    one = GraphedForward(model)
    one.capture([(16, 4096)])
    largest = torch.cuda.memory_allocated() - base
    del one
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    graphed = GraphedForward(model)
    buckets = all_buckets(8, 4096)
    graphed.capture(buckets)
    assert graphed.captures == len(buckets) > 20
    assert torch.cuda.memory_allocated() - base <= 3 * largest + (64 << 20), (largest, buckets)
    assert_graphed_equals_eager(graphed, model, cfg, [[100, 0, 900, 31], [3000, 17], [5]])
    assert graphed.captures == len(buckets)  # no capture at a call


def test_alternating_output_states_hold_until_the_call_after_next():
    """fresh_state=False with inputs padded on the host (the engine's steps): the new state comes in one of two
    buffer sets taken in turn, equal to a fresh copy, and untouched by the next call of any bucket (the engine
    books step k before it launches step k + 2)."""
    cfg = PRESETS["small"]
    model = build_random(cfg, seed=5).cuda().to(torch.bfloat16)
    graphed = GraphedForward(model)
    calls = [[100, 0, 900, 31], [5], [3000, 17], [40, 40]]
    kept = []
    for seed, lens in enumerate(calls):
        ids, cu = ragged(cfg, lens, seed)
        state = model.init_state(len(lens))
        state.layers = [torch.randn_like(s) * 0.1 for s in state.layers]
        hidden, fresh = graphed(ids, cu, state)
        ids_pad, cu_pad = (torch.from_numpy(a).cuda() for a in padded_inputs(ids.cpu().numpy(), cu.cpu().numpy()))
        padded_hidden, alt = graphed(ids_pad, cu_pad, state, fresh_state=False, tokens=len(ids))
        assert torch.equal(padded_hidden, hidden), seed  # inputs padded on the host: the same forward
        for a, b in zip(alt.tensors().values(), fresh.tensors().values(), strict=True):
            assert torch.equal(a, b), seed
        if kept:  # the previous call's alternating state, after this call's
            prev, prev_fresh = kept[-1]
            for a, b in zip(prev.tensors().values(), prev_fresh.tensors().values(), strict=True):
                assert torch.equal(a, b), seed
        kept.append((alt, fresh))
    # two sets: the state of call i shares memory with that of call i + 2, never with i + 1
    ptr = [a.layers[0].data_ptr() for a, _ in kept]
    assert ptr[0] == ptr[2] != ptr[1] == ptr[3]
