"""The Triton retention kernels on the CPU (Triton's interpreter) against a float64 reference.

Triton decides when it is imported and when a kernel is decorated whether kernels are interpreted,
for the whole process. So the interpreter tests here run in a child pytest started with
TRITON_INTERPRET=1 (test_kernels_on_the_interpreter); in the parent they are skipped, and the parent
process, with every other test module in it, keeps Triton as it was.

The interpreter stores bfloat16 as raw 16-bit integers, multiplies them as integers in tl.dot and
truncates float32 -> bfloat16; the `bf16_like_gpu` fixture makes both behave as on the GPU
(products of the bf16 values in float32, round to nearest even), so bf16 runs here are held to
the same tolerance as on the device.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers_runs import pool_runs_by_stream, random_runs
from streamret_kernels import (
    chunk_retention,
    chunk_retention_reference,
    recurrent_retention_step,
    recurrent_retention_step_reference,
    retention_log_decays,
)
from streamret_kernels.utils import interpreter_bf16_like_gpu, poisoned_allocations

TOL = {torch.float32: 1e-5, torch.bfloat16: 3e-3, torch.float16: 3e-3}
DTYPES = list(TOL)
CHILD = os.environ.get("STREAMRET_KERNEL_TESTS") == "interpreter" and os.environ.get("TRITON_INTERPRET") == "1"
interpreted = pytest.mark.skipif(not CHILD, reason="runs in the interpreter child of test_kernels_on_the_interpreter")


def test_kernels_on_the_interpreter():
    if CHILD:
        pytest.skip("this is the child")
    env = dict(os.environ, TRITON_INTERPRET="1", STREAMRET_KERNEL_TESTS="interpreter")
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", __file__],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert res.returncode == 0, res.stdout[-8000:] + res.stderr[-2000:]
    last = res.stdout.strip().splitlines()[-1]  # e.g. "34 passed, 2 skipped in 30.1s"
    assert re.search(r"\d+ passed, 2 skipped in", last), last  # only the two parent-side tests skip there


@pytest.fixture(autouse=True)
def accesses_inside_the_launch_tensors(monkeypatch):
    """In the interpreter child, every unmasked load and store of every kernel launch must lie inside one of the
    tensors the launch was given. The interpreter reads and writes host memory through raw pointers and
    never faults, while on the GPU an access past a tensor reads another's memory or faults (session 37: the
    segmented kernels' programs past a sequence's end loaded slots past the scratch tensor's end, correct
    here and an illegal memory access on the H100). This hooks Triton 3.9's interpreter internals."""
    if not CHILD:
        yield
        return
    from triton.runtime import interpreter

    spans = np.zeros((2, 0), dtype=np.uint64)  # the launch's tensors' byte ranges, merged: starts, ends

    init_args = interpreter.GridExecutor._init_args_hst

    def recording_init_args(self, args_dev, kwargs):
        nonlocal spans
        args_hst, kwargs_hst = init_args(self, args_dev, kwargs)
        ranges = []
        for arg in [*args_hst, *kwargs_hst.values()]:
            if isinstance(arg, torch.Tensor) and arg.numel():
                lo = arg.data_ptr()  # the view's extent: an access outside it belongs to no operand
                extent = sum((n - 1) * st for n, st in zip(arg.shape, arg.stride())) + 1
                ranges.append([lo, lo + extent * arg.element_size()])
        merged: list[list[int]] = []  # overlapping views (q, k and v of one projection; h0 and ht) joined
        for lo, hi in sorted(ranges):
            if merged and lo <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        spans = np.array(merged, dtype=np.uint64).reshape(-1, 2).T
        return args_hst, kwargs_hst

    def check(ptrs, mask, what):
        p = ptrs.data if mask is None else ptrs.data[np.broadcast_to(mask.data, ptrs.data.shape)]
        size = np.uint64(np.dtype(interpreter._get_np_dtype(ptrs.get_element_ty())).itemsize)
        span = np.searchsorted(spans[0], p, side="right") - 1  # the last span starting at or before p
        inside = (span >= 0) & (p + size <= spans[1][np.maximum(span, 0)])
        if not inside.all():
            bad = int(p[~inside].ravel()[0])
            raise AssertionError(f"{what} at {bad:#x}, outside every tensor of the launch (byte ranges "
                                 f"{[(hex(a), hex(b)) for a, b in spans.T.tolist()]}; "
                                 f"{int((~inside).sum())} of {p.size} unmasked elements)")

    load, store = interpreter.InterpreterBuilder.create_masked_load, interpreter.InterpreterBuilder.create_masked_store

    def checked_load(self, ptrs, mask, other, *args):
        check(ptrs, mask, "a load")
        return load(self, ptrs, mask, other, *args)

    def checked_store(self, ptrs, value, mask, *args):
        check(ptrs, mask, "a store")
        return store(self, ptrs, value, mask, *args)

    monkeypatch.setattr(interpreter.GridExecutor, "_init_args_hst", recording_init_args)
    monkeypatch.setattr(interpreter.InterpreterBuilder, "create_masked_load", checked_load)
    monkeypatch.setattr(interpreter.InterpreterBuilder, "create_masked_store", checked_store)
    yield


@pytest.fixture(scope="module")
def fwd():
    from streamret_kernels.chunk_retention import triton_fwd

    return triton_fwd


@pytest.fixture(scope="module")
def step():
    from streamret_kernels.recurrent_step import triton_step

    return triton_step


@pytest.fixture(autouse=True)
def bf16_like_gpu():
    if not CHILD:
        yield
        return
    with interpreter_bf16_like_gpu():
        yield


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    assert torch.isfinite(x).all(), "non-finite values: an output element was not written"
    return ((x.double() - ref.double()).norm() / ref.double().norm().clamp_min(1e-300)).item()


def make_inputs(lens, H, K, V, dtype, *, seed, with_state=True):
    g = torch.Generator().manual_seed(seed)
    T = sum(lens)
    cu = torch.tensor([0, *np.cumsum(lens).tolist()], dtype=torch.int32)
    q = torch.randn(T, H, K, generator=g).to(dtype)
    k = (torch.randn(T, H, K, generator=g) * K**-0.5).to(dtype)
    v = torch.randn(T, H, V, generator=g).to(dtype)
    h0 = torch.randn(len(lens), H, K, V, generator=g) if with_state else None
    return q, k, v, cu, h0


def check_chunk(fwd, lens, H, K, V, dtype, *, seed, decays=None, with_state=True, **kw):
    q, k, v, cu, h0 = make_inputs(lens, H, K, V, dtype, seed=seed, with_state=with_state)
    lg = retention_log_decays(H, decays)
    h0_before = None if h0 is None else h0.clone()
    with poisoned_allocations():
        o, ht = fwd.chunk_retention_triton(q, k, v, lg, cu_seqlens=cu, initial_state=h0, **kw)
    ro, rt = chunk_retention_reference(
        q.double(), k.double(), v.double(), lg, cu_seqlens=cu,
        initial_state=None if h0 is None else h0.double(),
    )
    assert o.dtype == dtype and o.shape == ro.shape and ht.dtype == torch.float32 and ht.shape == rt.shape
    assert rel_err(o, ro) <= TOL[dtype], (lens, dtype, kw)
    assert rel_err(ht, rt) <= TOL[dtype], (lens, dtype, kw)
    if h0 is not None:
        assert torch.equal(h0, h0_before), "initial_state was modified"
    return o, ht


@interpreted
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("segment_len", [0, None, 40])
def test_chunk_ragged(fwd, dtype, segment_len):
    # lengths 1 and 0, lengths below, at and past the chunk, K != V, V not a power of two
    lens = [1, 70, 0, 33, 16, 130, 5]
    check_chunk(fwd, lens, H=2, K=32, V=48, dtype=dtype, seed=1, decays=[0.97, 0.5], segment_len=segment_len)


@interpreted
def test_segments_of_many_ragged_sequences_take_slots_of_their_own_and_few_of_them(fwd, monkeypatch):
    """Cut into 16-token segments, 24 sequences of 0 to 60 tokens keep each segment's states apart (a slot
    shared by two segments gives a wrong state), in N + T / 16 slots of scratch states, not N x the segments of the
    longest (768 MiB a tensor at 64 sequences x 24,576 tokens of the default model's heads)."""
    lens = torch.randint(0, 61, (24,), generator=torch.Generator().manual_seed(21)).tolist()
    lens[3] = 0
    shapes = []
    empty = torch.empty

    def recording(*shape, **kw):
        shapes.append(tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape)
        return empty(*shape, **kw)

    monkeypatch.setattr(torch, "empty", recording)
    check_chunk(fwd, lens, H=1, K=16, V=16, dtype=torch.float32, seed=21, segment_len=16)
    scratch = [s for s in shapes if len(s) == 4 and s[0] != len(lens)]  # [slots, H, K, V]; the final state: [N, ...]
    assert scratch and max(s[0] for s in scratch) <= len(lens) + sum(lens) // 16, scratch


@interpreted
@pytest.mark.parametrize("dtype", DTYPES)
def test_chunk_one_long_sequence_is_cut_into_segments(fwd, dtype):
    # N * H * NV programs are far below 2 x the interpreter's 8 "SMs": the planner cuts the sequence
    assert fwd.plan_segment_len(1, 300, 1, 1, 64, fwd.num_sms(torch.device("cpu"))) > 0
    check_chunk(fwd, [300], H=1, K=16, V=32, dtype=dtype, seed=2)


@interpreted
def test_chunk_many_short_sequences(fwd):
    g = torch.Generator().manual_seed(3)
    lens = torch.randint(1, 20, (60,), generator=g).tolist()
    check_chunk(fwd, lens, H=2, K=16, V=16, dtype=torch.bfloat16, seed=3, segment_len=0)


@interpreted
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunk_zero_state_matches_given_zeros(fwd, dtype):
    lens = [40, 7, 90]
    o_none, s_none = check_chunk(fwd, lens, H=2, K=24, V=32, dtype=dtype, seed=4, with_state=False)
    q, k, v, cu, _ = make_inputs(lens, 2, 24, 32, dtype, seed=4, with_state=False)
    zeros = torch.zeros(len(lens), 2, 24, 32)
    o_zero, s_zero = fwd.chunk_retention_triton(q, k, v, retention_log_decays(2), cu_seqlens=cu, initial_state=zeros)
    torch.testing.assert_close(o_none, o_zero, rtol=0, atol=0)
    torch.testing.assert_close(s_none, s_zero, rtol=0, atol=0)


@interpreted
def test_chunk_state_carries_across_calls(fwd):
    """Two calls (first half, then second half from the first's state) equal one call over the whole."""
    lens, H, K, V = [50, 77], 2, 16, 32
    q, k, v, cu, h0 = make_inputs(lens, H, K, V, torch.float32, seed=5)
    lg = retention_log_decays(H)
    o, ht = fwd.chunk_retention_triton(q, k, v, lg, cu_seqlens=cu, initial_state=h0)
    cut = [20, 41]
    first = [torch.arange(cu[i], cu[i] + cut[i]) for i in range(2)]
    second = [torch.arange(cu[i] + cut[i], cu[i + 1]) for i in range(2)]
    cu1 = torch.tensor([0, cut[0], sum(cut)])
    cu2 = torch.tensor([0, lens[0] - cut[0], sum(lens) - sum(cut)])
    i1, i2 = torch.cat(first), torch.cat(second)
    o1, s1 = fwd.chunk_retention_triton(q[i1], k[i1], v[i1], lg, cu_seqlens=cu1, initial_state=h0)
    o2, s2 = fwd.chunk_retention_triton(q[i2], k[i2], v[i2], lg, cu_seqlens=cu2, initial_state=s1)
    torch.testing.assert_close(o[i1], o1, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(o[i2], o2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ht, s2, rtol=1e-5, atol=1e-5)


@interpreted
def test_chunk_strong_decay_and_no_decay(fwd):
    # g = 1 (no decay) and g = 1e-6 (lg = -13.8: g^63 underflows, g^-n would overflow) stay finite
    check_chunk(fwd, [100, 3], H=2, K=16, V=16, dtype=torch.float32, seed=6, decays=[1.0, 1e-6])


@interpreted
def test_chunk_empty_batch_passes_state_through(fwd):
    q, k, v, cu, h0 = make_inputs([0, 0], 2, 16, 16, torch.float32, seed=7)
    o, ht = fwd.chunk_retention_triton(q, k, v, retention_log_decays(2), cu_seqlens=cu, initial_state=h0)
    assert o.shape == (0, 2, 16)
    torch.testing.assert_close(ht, h0, rtol=0, atol=0)


@interpreted
def test_chunk_segment_plan_fills_the_gpu(fwd):
    sms = 132
    assert fwd.plan_segment_len(64, 64 * 512, 8, 4, 64, sms) == 0  # 2048 programs: no cuts
    for N, T in [(1, 131072), (4, 65536), (2, 4096)]:
        seg = fwd.plan_segment_len(N, T, 8, 4, 64, sms)
        programs = N * math.ceil(T / N / seg) * 8 * 4
        assert seg % 64 == 0 and seg <= 4096 and (programs >= 1.5 * sms or seg == 4 * 64), (N, T, seg)


TWO_PASS_SMALL = dict(BT=32, BV=32, num_warps=4, state_every=32, state_BT=16, state_BK=16, state_BV=16, state_warps=4,
                      narrow_state_BK=16, narrow_state_BV=16, narrow_state_BT=16)


def test_two_pass_state_plan():
    """The wide state tiling where it fills the GPU twice over, else the narrow one uncut while it
    fills it once, else cut; a forced cut takes the narrow tiling, a forced 0 never cuts."""
    from streamret_kernels.chunk_retention.triton_fwd import TwoPassConfig
    from streamret_kernels.chunk_retention.triton_two_pass import plan_state_pass

    cfg, sms = TwoPassConfig(), 132
    wide = (cfg.state_BK, cfg.state_BV, cfg.state_warps, cfg.state_BT, cfg.state_stages)
    narrow = (cfg.narrow_state_BK, cfg.narrow_state_BV, cfg.narrow_state_warps, cfg.narrow_state_BT,
              cfg.narrow_state_stages)
    assert wide != narrow
    assert plan_state_pass(cfg, 64, 64 * 512, 8, 256, 512, sms, None) == (wide, 0)  # 8192 wide programs
    assert plan_state_pass(cfg, 1, 32768, 8, 256, 512, sms, None) == (narrow, 0)  # 128 wide, 256 narrow
    tiles, seg = plan_state_pass(cfg, 1, 32768, 2, 256, 512, sms, None)  # 64 narrow programs: cut
    assert tiles == narrow and seg > 0
    assert plan_state_pass(cfg, 1, 32768, 2, 256, 512, sms, 0) == (narrow, 0)
    assert plan_state_pass(cfg, 64, 64 * 512, 8, 256, 512, sms, 1024) == (narrow, 1024)
    assert plan_state_pass(cfg, 1, 300, 1, 16, 32, sms, None)[0][:2] == (16, 32)  # tiles no wider than K, V




@interpreted
@pytest.mark.parametrize(("dtype", "state_every", "segment_len"), [
    *((dtype, every, 0) for dtype in DTYPES for every in (32, 64)),
    (torch.float32, 32, 40), (torch.bfloat16, 32, 40),
])
def test_chunk_two_pass_ragged(fwd, dtype, state_every, segment_len):
    """The two-pass forward: K and V split into several state tiles, V not a power of two, lengths
    0 and 1, spans and sequences not aligned to each other; whole sequences, and cut into segments
    (40 tokens: rounded up to whole spans)."""
    cfg = fwd.TwoPassConfig(**(TWO_PASS_SMALL | dict(state_every=state_every)))
    lens = [1, 70, 0, 33, 16, 130, 5]
    check_chunk(fwd, lens, H=2, K=40, V=48, dtype=dtype, seed=11, decays=[0.97, 0.5], config=cfg,
                segment_len=segment_len)


@interpreted
@pytest.mark.parametrize("narrow", [(16, 16, 16), (32, 16, 32)])
def test_chunk_two_pass_narrow_tiling_uncut(fwd, narrow):
    """A handful of sequences: the narrow state tiling, uncut (4 wide programs < 2 x the interpreter's
    8 "SMs"; 36 or 24 narrow ones >= 8)."""
    from streamret_kernels.chunk_retention.triton_two_pass import plan_state_pass

    cfg = fwd.TwoPassConfig(**(TWO_PASS_SMALL | dict(state_BK=64, state_BV=64, narrow_state_BK=narrow[0],
                                                     narrow_state_BV=narrow[1], narrow_state_BT=narrow[2])))
    tiles, seg = plan_state_pass(cfg, 2, 200, 2, 40, 48, fwd.num_sms(torch.device("cpu")), None)
    assert (*tiles[:2], tiles[3]) == narrow and seg == 0  # (a 32-token step: half the steps of state_BT)
    check_chunk(fwd, [70, 130], H=2, K=40, V=48, dtype=torch.bfloat16, seed=19, config=cfg)


@interpreted
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunk_two_pass_cuts_one_long_sequence(fwd, dtype):
    # 1 x 1 x 1 x 2 state programs are far below 2 x the interpreter's 8 "SMs": the planner cuts
    assert fwd.plan_segment_len(1, 300, 1, 2, 16, fwd.num_sms(torch.device("cpu"))) > 0
    cfg = fwd.TwoPassConfig(**TWO_PASS_SMALL)
    check_chunk(fwd, [300], H=1, K=16, V=32, dtype=dtype, seed=15, config=cfg)


@interpreted
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunk_two_pass_fused_columns_and_extreme_decays(fwd, dtype):
    lens, H, K, V = [5, 100, 33], 2, 16, 32
    T = sum(lens)
    q, k, v, _g = fused_buffer(T, [H * K, H * K, H * V, H * V], dtype, seed=12)
    k.mul_(K**-0.5)
    q, k, v = q.view(T, H, K), k.view(T, H, K), v.view(T, H, V)
    cu = torch.tensor([0, *np.cumsum(lens).tolist()], dtype=torch.int32)
    lg = retention_log_decays(H, [1.0, 1e-6])  # no decay, and g^n underflowing
    h0 = torch.randn(len(lens), H, K, V)
    with poisoned_allocations():
        o, ht = fwd.chunk_retention_triton(q, k, v, lg, cu_seqlens=cu, initial_state=h0,
                                           config=fwd.TwoPassConfig(**TWO_PASS_SMALL))
    ro, rt = chunk_retention_reference(q.double(), k.double(), v.double(), lg, cu_seqlens=cu, initial_state=h0.double())
    assert rel_err(o, ro) <= TOL[dtype] and rel_err(ht, rt) <= TOL[dtype]


@interpreted
@pytest.mark.parametrize("segment_fix", ["product", "off"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])  # float16: float32 states, as float32
@pytest.mark.parametrize("with_state", [True, False])
def test_chunk_two_pass_segments_from_one_state_pass(fwd, segment_fix, dtype, with_state):
    """Sequences cut into 128-token segments (two 64-token spans of two 32-row blocks each): span
    states local to each segment plus the incoming state's part, added by the output pass
    (product), and the second state pass (off). Lengths: shorter than a segment, ending mid-span,
    exactly a segment, empty, several segments; a slow head (segments carry most of the state) and a
    fast one (the incoming state's factor underflows inside a segment: nothing to load)."""
    cfg = fwd.TwoPassConfig(**(TWO_PASS_SMALL | dict(state_every=64, segment_fix=segment_fix)))
    check_chunk(fwd, [20, 150, 0, 128, 300, 1], H=2, K=40, V=48, dtype=dtype, seed=17, decays=[0.995, 1e-3],
                with_state=with_state, config=cfg, segment_len=128)


SPAN_CASES = [  # (BT, state_every, dtype, with_state): every dtype at 2 row blocks a span, fewer at 4 and 3
    *((16, 32, dtype, with_state) for dtype in DTYPES for with_state in (True, False)),
    *((16, 64, dtype, with_state) for dtype in (torch.bfloat16, torch.float32) for with_state in (True, False)),
    (32, 128, torch.bfloat16, True), (32, 128, torch.float32, False),
    (16, 48, torch.bfloat16, True), (16, 48, torch.float16, False),
]


@interpreted
@pytest.mark.parametrize(("BT", "state_every", "dtype", "with_state"), SPAN_CASES)
def test_chunk_two_pass_spans_of_several_row_blocks(fwd, BT, state_every, dtype, with_state):
    """Spans of 2, 4 and 3 row blocks (the output pass's key sub-blocks of BT keys, those past the
    row block skipped): lengths 0 and 1, shorter than a block, between blocks and spans, exactly a
    span, several spans; a slow head and a fast one (scores against a sub-block 3 blocks back
    underflow)."""
    # (span_stages: the pipeline depth of blocks past a span's first, which the interpreter ignores; its code path runs)
    cfg = fwd.TwoPassConfig(**(TWO_PASS_SMALL | dict(BT=BT, state_every=state_every, span_stages=2 * (BT == 32))))
    lens = [1, 70, 0, 33, state_every, 16, 130, 5, 2 * state_every + BT + 3]
    check_chunk(fwd, lens, H=2, K=40, V=48, dtype=dtype, seed=21, decays=[0.97, 0.5], with_state=with_state,
                config=cfg, segment_len=0)


@interpreted
@pytest.mark.parametrize("segment_fix", ["product", "off"])
@pytest.mark.parametrize(("BT", "state_every", "dtype"), [(16, 32, torch.bfloat16), (16, 64, torch.float32)])
@pytest.mark.parametrize("with_state", [True, False])
def test_chunk_two_pass_segments_with_spans_of_several_row_blocks(fwd, segment_fix, BT, state_every, dtype,
                                                                  with_state):
    """Sequences cut into 128-token segments of 4 or 2 spans, each span 2 or 4 row blocks (32 and
    64 tokens, as test_chunk_two_pass_segments_from_one_state_pass with 16-row blocks): the incoming
    state's part (product) and the second state pass (off) on rows past the span's first block.
    Lengths: shorter than a segment, ending mid-span and mid-block, exactly a segment, empty,
    several segments; K and V below one state tile and past it."""
    cfg = fwd.TwoPassConfig(**(TWO_PASS_SMALL | dict(BT=BT, state_every=state_every, segment_fix=segment_fix)))
    check_chunk(fwd, [20, 150, 0, 128, 270, 1], H=2, K=24, V=40, dtype=dtype, seed=23, decays=[0.995, 1e-3],
                with_state=with_state, config=cfg, segment_len=128)


KEYS_CASES = [  # (dtype, state_every, BT, key_block, BV, with_state, segment_len)
    (torch.bfloat16, 32, 32, 16, 32, True, 0), (torch.bfloat16, 128, 32, 16, 64, False, 0),
    (torch.float32, 64, 32, 32, 16, True, 0), (torch.float16, 64, 32, 32, 16, False, 0),
    (torch.bfloat16, 64, 32, 16, 32, True, 128), (torch.float32, 32, 32, 32, 64, False, 128),
]


@interpreted
@pytest.mark.parametrize(("dtype", "state_every", "BT", "key_block", "BV", "with_state", "segment_len"), KEYS_CASES)
def test_chunk_two_pass_keys_form(fwd, dtype, state_every, BT, key_block, BV, with_state, segment_len):
    """The keys output form (one program a row block and V-block, walking the span's keys): spans of 1 to
    4 row blocks, V-blocks past V (V 48 at BV 64) and several (BV 16), key blocks of half a row block;
    lengths 0 and 1, shorter than a key block, mid-span, several spans; whole sequences and cut into
    128-token segments (the incoming state's product in the state loop); a slow head and a fast one."""
    cfg = fwd.TwoPassConfig(**(TWO_PASS_SMALL | dict(BT=BT, BV=BV, state_every=state_every, output_form="keys",
                                                     key_block=key_block)))
    check_chunk(fwd, [1, 70, 0, 33, 16, 130, 5, 300], H=2, K=40, V=48, dtype=dtype, seed=27, decays=[0.97, 0.5],
                with_state=with_state, config=cfg, segment_len=segment_len)


@interpreted
def test_two_pass_keys_form_checks_its_tiles(fwd):
    q, k, v, cu, h0 = make_inputs([40], 1, 16, 16, torch.float32, seed=28)
    lg = retention_log_decays(1)
    cfg = fwd.TwoPassConfig(**(TWO_PASS_SMALL | dict(output_form="keys", key_block=64)))
    with pytest.raises(ValueError, match="key_block=64 must be >= 16 and divide the output pass's BT=32"):
        fwd.chunk_retention_triton(q, k, v, lg, cu_seqlens=cu, initial_state=h0, config=cfg)
    cfg = fwd.TwoPassConfig(**(TWO_PASS_SMALL | dict(output_form="flash")))
    with pytest.raises(ValueError, match=r"output_form='flash'; use one of \('scores', 'keys'\)"):
        fwd.chunk_retention_triton(q, k, v, lg, cu_seqlens=cu, initial_state=h0, config=cfg)


@interpreted
def test_two_pass_state_every_must_be_whole_row_blocks(fwd):
    q, k, v, cu, h0 = make_inputs([40], 1, 16, 16, torch.float32, seed=24)
    for bt, every in ((16, 40), (32, 16)):
        cfg = fwd.TwoPassConfig(**(TWO_PASS_SMALL | dict(BT=bt, state_every=every)))
        with pytest.raises(ValueError, match=f"state_every={every} must be a positive multiple of .* BT={bt}"):
            fwd.chunk_retention_triton(q, k, v, retention_log_decays(1), cu_seqlens=cu, initial_state=h0, config=cfg)
    cfg = fwd.TwoPassConfig(**(TWO_PASS_SMALL | dict(state_every=64, span_stages=-1)))
    with pytest.raises(ValueError, match="span_stages=-1 must be >= 1, or 0 for the output pass's own depth"):
        fwd.chunk_retention_triton(q, k, v, retention_log_decays(1), cu_seqlens=cu, initial_state=h0, config=cfg)


@interpreted
def test_segment_fix_switch(fwd, monkeypatch):
    monkeypatch.delenv("STREAMRET_SEGMENT_FIX", raising=False)
    assert fwd.pick_config(256, 512, torch.bfloat16, 512.0).segment_fix == "product"
    monkeypatch.setenv("STREAMRET_SEGMENT_FIX", "off")
    assert fwd.pick_config(256, 512, torch.bfloat16, 512.0).segment_fix == "off"
    monkeypatch.setenv("STREAMRET_SEGMENT_FIX", "1")
    with pytest.raises(ValueError, match="product"):
        fwd.pick_config(256, 512, torch.bfloat16, 512.0)
    q, k, v, cu, h0 = make_inputs([40], 1, 16, 16, torch.float32, seed=18)
    with pytest.raises(ValueError, match="segment_fix='twice'"):
        fwd.chunk_retention_triton(q, k, v, retention_log_decays(1), cu_seqlens=cu, segment_len=32,
                                   config=fwd.TwoPassConfig(**TWO_PASS_SMALL, segment_fix="twice"))


@interpreted
def test_two_pass_form_switch(fwd, monkeypatch):
    """STREAMRET_TWO_PASS_FORM picks the two-pass output form for bf16 (float32 keeps its own small scores
    tiling); a bad value is named."""
    monkeypatch.delenv("STREAMRET_TWO_PASS_FORM", raising=False)
    assert fwd.pick_config(256, 512, torch.bfloat16, 512.0).output_form == "scores"
    monkeypatch.setenv("STREAMRET_TWO_PASS_FORM", "keys")
    cfg = fwd.pick_config(256, 512, torch.bfloat16, 512.0)
    assert (cfg.output_form, cfg.state_every, cfg.BV) == ("keys", 512, 256)
    assert fwd.pick_config(256, 512, torch.float32, 512.0).__class__ is fwd.ChunkConfig
    monkeypatch.setenv("STREAMRET_CHUNK_ALGO", "two_pass")
    assert fwd.pick_config(256, 512, torch.float32, 512.0).output_form == "scores"
    monkeypatch.setenv("STREAMRET_TWO_PASS_FORM", "flash")
    with pytest.raises(ValueError, match=r"STREAMRET_TWO_PASS_FORM='flash'; use one of \('scores', 'keys'\)"):
        fwd.pick_config(256, 512, torch.bfloat16, 512.0)


@interpreted
def test_chunk_two_pass_without_state_and_empty(fwd):
    cfg = fwd.TwoPassConfig(**TWO_PASS_SMALL)
    check_chunk(fwd, [64, 1, 31], H=2, K=16, V=16, dtype=torch.bfloat16, seed=13, with_state=False, config=cfg)
    q, k, v, cu, h0 = make_inputs([0, 0], 2, 16, 16, torch.float32, seed=13)
    o, ht = fwd.chunk_retention_triton(q, k, v, retention_log_decays(2), cu_seqlens=cu, initial_state=h0, config=cfg)
    assert o.shape == (0, 2, 16)
    torch.testing.assert_close(ht, h0, rtol=0, atol=0)


@interpreted
def test_chunk_algo_switch(fwd, monkeypatch):
    """STREAMRET_CHUNK_ALGO picks the forward; auto takes the two-pass one for bf16 at K >= 256 only."""
    assert isinstance(fwd.pick_config(256, 512, torch.bfloat16, 512.0), fwd.TwoPassConfig)
    assert isinstance(fwd.pick_config(256, 512, torch.float32, 512.0), fwd.ChunkConfig)
    assert isinstance(fwd.pick_config(128, 256, torch.bfloat16, 512.0), fwd.ChunkConfig)
    monkeypatch.setenv("STREAMRET_CHUNK_ALGO", "one_pass")
    assert isinstance(fwd.pick_config(256, 512, torch.bfloat16, 512.0), fwd.ChunkConfig)
    monkeypatch.setenv("STREAMRET_CHUNK_ALGO", "two_pass")
    assert isinstance(fwd.pick_config(64, 128, torch.bfloat16, 512.0), fwd.TwoPassConfig)
    check_chunk(fwd, [20, 50], H=2, K=16, V=32, dtype=torch.float32, seed=14)
    monkeypatch.setenv("STREAMRET_CHUNK_ALGO", "fast")
    with pytest.raises(ValueError, match="one_pass"):
        fwd.pick_config(64, 128, torch.bfloat16, 512.0)


@interpreted
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("N", [1, 37])
def test_step(step, dtype, inplace, N):
    g = torch.Generator().manual_seed(N)
    H, K, V = 3, 24, 40
    q = torch.randn(N, H, K, generator=g).to(dtype)
    k = (torch.randn(N, H, K, generator=g) * K**-0.5).to(dtype)
    v = torch.randn(N, H, V, generator=g).to(dtype)
    state = torch.randn(N, H, K, V, generator=g)
    before = state.clone()
    lg = retention_log_decays(H)
    with poisoned_allocations():
        o, new = step.recurrent_retention_step_triton(q, k, v, state, lg, inplace=inplace)
    ro, rs = recurrent_retention_step_reference(q.double(), k.double(), v.double(), before.double(), lg)
    assert o.dtype == dtype and new.dtype == torch.float32
    assert rel_err(o, ro) <= TOL[dtype]
    assert rel_err(new, rs) <= 1e-6  # float32 arithmetic on the state whatever the input dtype
    if inplace:
        assert new is state
    else:
        assert torch.equal(state, before) and new.data_ptr() != state.data_ptr()


@interpreted
def test_public_functions_dispatch_to_triton():
    q, k, v, cu, h0 = make_inputs([9, 30], 2, 16, 32, torch.float32, seed=8)
    lg = retention_log_decays(2)
    o, ht = chunk_retention(q, k, v, lg, cu_seqlens=cu, initial_state=h0, backend="triton")
    ro, rt = chunk_retention(q, k, v, lg, cu_seqlens=cu, initial_state=h0, backend="torch")
    torch.testing.assert_close(o, ro, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ht, rt, rtol=1e-5, atol=1e-5)
    o, s = recurrent_retention_step(q[:2], k[:2], v[:2], h0, lg, backend="triton")
    ro, rs = recurrent_retention_step(q[:2], k[:2], v[:2], h0, lg, backend="torch")
    torch.testing.assert_close(o, ro, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(s, rs, rtol=1e-5, atol=1e-5)


@interpreted
def test_bad_inputs_name_the_fix(fwd, step):
    q, k, v, cu, h0 = make_inputs([4], 1, 16, 16, torch.float32, seed=9)
    with pytest.raises(ValueError, match="one dtype"):
        fwd.chunk_retention_triton(q, k.half(), v, retention_log_decays(1))
    with pytest.raises(ValueError, match="float32"):
        step.recurrent_retention_step_triton(q, k, v, h0.double(), retention_log_decays(1))


@interpreted
def test_bf16_split_lowers_the_error(fwd):
    """split_bf16 (scores as bf16 value + residue) lowers the error that fla's numerics add to the
    output's own bf16 rounding."""
    q, k, v, cu, h0 = make_inputs([150, 40], 2, 32, 32, torch.bfloat16, seed=10)
    lg = retention_log_decays(2)
    ro, _ = chunk_retention_reference(q.double(), k.double(), v.double(), lg, cu_seqlens=cu, initial_state=h0.double())
    floor = rel_err(ro.to(torch.bfloat16), ro)
    errs = {}
    for split in (False, True):
        cfg = fwd.ChunkConfig(BT=32, BV=32, split_bf16=split)
        o, _ = fwd.chunk_retention_triton(q, k, v, lg, cu_seqlens=cu, initial_state=h0, config=cfg)
        errs[split] = rel_err(o, ro)
    assert floor < errs[True] < 0.95 * errs[False] <= TOL[torch.bfloat16], (floor, errs)


# ----------------------------------------------------------------------------------------------
# the fused layer ops: each Triton kernel against its float64 reference, on strided views of one
# fused projection output as the model passes them


def fused_buffer(T: int, widths: list[int], dtype: torch.dtype, seed: int) -> list[torch.Tensor]:
    """Column ranges of one [T, sum(widths)] tensor (views with the buffer's row stride)."""
    buf = torch.randn(T, sum(widths), generator=torch.Generator().manual_seed(seed)).to(dtype)
    return list(buf.split(widths, dim=1))


@interpreted
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("D", [48, 384])
def test_rms_norm(dtype, D):
    from streamret_kernels.rms_norm import rms_norm, rms_norm_reference

    g = torch.Generator().manual_seed(D)
    x = (torch.randn(37, D, generator=g) * 3).to(dtype)
    w = torch.randn(D, generator=g).to(dtype)
    with poisoned_allocations():
        y = rms_norm(x, w, 1e-6, backend="triton")
    ref = rms_norm_reference(x.double(), w.double(), 1e-6)
    assert y.dtype == dtype and y.shape == x.shape
    assert rel_err(y, ref) <= TOL[dtype]


@interpreted
@pytest.mark.parametrize("dtype", DTYPES)
def test_inv_rms_is_the_norms_factor(dtype):
    """The factor alone, and (x * w) scaled by it row by row is the norm: what folding a norm's
    weight into the next projection relies on."""
    from streamret_kernels.rms_norm import inv_rms, inv_rms_reference, rms_norm_reference

    g = torch.Generator().manual_seed(11)
    x = (torch.randn(3, 37, 384, generator=g) * 3).to(dtype)
    w = torch.randn(384, generator=g).to(dtype)
    with poisoned_allocations():
        r = inv_rms(x, 1e-6, backend="triton")
    ref = inv_rms_reference(x.double(), 1e-6)
    assert r.dtype == torch.float32 and r.shape == (3, 37)
    assert rel_err(r, ref) <= 1e-6
    xd, wd = x.double(), w.double()
    assert rel_err(ref, 1 / (xd.square().sum(-1) / 384 + 1e-6).sqrt()) <= 1e-12  # 1 / sqrt(mean(x^2) + eps)
    assert rel_err(xd * wd * ref[..., None], rms_norm_reference(xd, wd, 1e-6)) <= 1e-12


@interpreted
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("scaled", [False, True])
def test_rotary_on_fused_columns(dtype, inplace, scaled):
    from streamret_kernels.rotary import apply_rotary, rotary_reference

    T, H, K = 29, 3, 16
    qk, _ = fused_buffer(T, [2 * H * K, 40], dtype, seed=2)
    x = qk.view(T, 2 * H, K)  # row stride 2HK + 40: q and k heads of a fused projection
    angles = torch.rand(T, K // 2, dtype=torch.float64) * 1e3
    cos, sin = torch.cos(angles).float(), torch.sin(angles).float()
    # a strided per-token scale (a column of a wider tensor), spanning orders of magnitude
    r = torch.logspace(-1, 1, 2 * T, dtype=torch.float32).view(T, 2)[:, 1] if scaled else None
    tail = H if scaled else 0  # the k heads take the scale squared
    ref = rotary_reference(x.double(), cos.double(), sin.double(), None if r is None else r.double(), tail)
    if scaled:
        plain = rotary_reference(x.double(), cos.double(), sin.double())
        assert rel_err(ref[:, :H], plain[:, :H] * r.double()[:, None, None]) < 1e-12
        assert rel_err(ref[:, H:], plain[:, H:] * r.double().square()[:, None, None]) < 1e-12
    untouched = _.clone()
    y = apply_rotary(x, cos, sin, inplace=inplace, row_scale=r, squared_tail=tail, backend="triton")
    assert (y is x) == inplace and y.dtype == dtype
    assert rel_err(y, ref) <= TOL[dtype]
    assert torch.equal(_, untouched), "columns beside q and k were written"


@interpreted
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scaled", [False, True])
def test_gated_norm_with_strided_gate(dtype, scaled):
    from streamret_kernels.gated_norm import gated_rms_norm, gated_rms_norm_reference

    T, H, V = 23, 3, 24
    g = torch.Generator().manual_seed(3)
    o = (torch.randn(T, H, V, generator=g) * 5).to(dtype)
    _, gate = fused_buffer(T, [32, H * V], dtype, seed=4)
    gate = gate.view(T, H, V)
    w = torch.randn(V, generator=g).to(dtype)
    r = torch.rand(T, generator=g) * 4 if scaled else None
    with poisoned_allocations():
        y = gated_rms_norm(o, gate, w, 1e-6, g_scale=r, backend="triton")
    ref = gated_rms_norm_reference(o.double(), gate.double(), w.double(), 1e-6, None if r is None else r.double())
    if scaled:
        assert rel_err(ref, gated_rms_norm_reference(o.double(), gate.double(), w.double(), 1e-6)) > 0.1
    assert y.dtype == dtype and y.shape == o.shape
    assert rel_err(y, ref) <= TOL[dtype]


@interpreted
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scaled", [False, True])
def test_swiglu_on_fused_columns(dtype, scaled):
    from streamret_kernels.swiglu import swiglu, swiglu_reference

    gate, up = fused_buffer(31, [40, 40], dtype, seed=5)
    r = torch.rand(31, generator=torch.Generator().manual_seed(6)) * 4 if scaled else None
    with poisoned_allocations():
        y = swiglu(gate, up, row_scale=r, backend="triton")
    assert y.dtype == dtype and y.shape == gate.shape and y.is_contiguous()
    ref = swiglu_reference(gate.double(), up.double(), None if r is None else r.double())
    assert rel_err(y, ref) <= TOL[dtype]
    if scaled:
        assert rel_err(ref, swiglu_reference(gate.double(), up.double())) > 0.1


@interpreted
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cu_dtype", [torch.int64, torch.int32])
def test_segment_sum(dtype, cu_dtype):
    from streamret_kernels.segment_sum import segment_sum, segment_sum_reference

    lens = [3, 0, 300, 1, 17, 0, 129]  # sequences inside a block, across blocks, empty ones
    cu = torch.tensor([0, *np.cumsum(lens).tolist()], dtype=cu_dtype)
    x = torch.randn(sum(lens), 48, generator=torch.Generator().manual_seed(9)).to(dtype)
    with poisoned_allocations():
        s = segment_sum(x, cu, backend="triton")
    assert s.dtype == torch.float64 and s.shape == (len(lens), 48)
    ref = segment_sum_reference(x.double(), cu)
    assert rel_err(s, ref) <= 1e-6  # float32 partial sums of 128 rows at most
    assert torch.equal(s[1], torch.zeros(48, dtype=torch.float64)) and torch.equal(s[5], s[1])


@interpreted
def test_segment_sum_finds_the_sequence_of_every_row():
    """Many short sequences (an engine step's segment runs), empty ones first, between and last: each row's
    sequence comes from a binary search over cu_seqlens."""
    from streamret_kernels.segment_sum import segment_sum, segment_sum_reference

    rng = np.random.default_rng(3)
    lens = [0, 0, *rng.integers(0, 6, 300).tolist(), 0, 0]
    cu = torch.tensor([0, *np.cumsum(lens).tolist()])
    x = torch.randn(sum(lens), 8, generator=torch.Generator().manual_seed(4))
    with poisoned_allocations():
        s = segment_sum(x, cu, backend="triton")
    ref = segment_sum_reference(x.double(), cu)
    assert rel_err(s, ref) <= 1e-6
    assert torch.equal(s[torch.tensor(lens) == 0], torch.zeros(sum(n == 0 for n in lens), 8, dtype=torch.float64))


def test_pool_runs_reference_is_the_run_by_run_pooling():
    from streamret_kernels.pool_runs import pool_runs_reference

    for seed in range(5):
        args = random_runs(seed, streams=7, d=24, dtype=torch.float32)
        means, open_after = pool_runs_reference(*args)
        want_means, want_open = pool_runs_by_stream(*args)
        assert rel_err(means, want_means) < 1e-12 and rel_err(open_after, want_open) < 1e-12


@interpreted
@pytest.mark.parametrize("dtype", DTYPES)
def test_pool_runs(dtype):
    from streamret_kernels.pool_runs import pool_runs, pool_runs_reference

    args = random_runs(11, streams=9, d=48, dtype=dtype, most_tokens=200)
    with poisoned_allocations():
        means, open_after = pool_runs(*args, backend="triton")
    want_means, want_open = pool_runs_by_stream(*args)
    assert means.dtype == open_after.dtype == torch.float64
    assert means.shape == want_means.shape and open_after.shape == want_open.shape
    assert rel_err(means, want_means) <= 1e-6 and rel_err(open_after, want_open) <= 1e-6  # float32 block sums
    ref_means, ref_open = pool_runs_reference(*args)
    assert rel_err(means, ref_means) <= 1e-6 and rel_err(open_after, ref_open) <= 1e-6


@interpreted
def test_pool_runs_of_long_streams():
    """Streams of hundreds of runs (a long document's chunk cut at every sentence): the kernel takes a stream's runs
    in blocks of 64 from its end, carrying what the later blocks add."""
    from streamret_kernels.pool_runs import pool_runs

    args = random_runs(6, streams=3, d=40, dtype=torch.float32, most_runs=300, most_tokens=8)
    assert int((args[3] - args[2]).max()) > 2 * 64  # a stream of three blocks or more
    means, open_after = pool_runs(*args, backend="triton")
    want_means, want_open = pool_runs_by_stream(*args)
    assert rel_err(means, want_means) <= 1e-6 and rel_err(open_after, want_open) <= 1e-6


@interpreted
def test_pool_runs_takes_strided_pools_and_one_run_streams():
    """Streams of one run each (the open segment added and left open by the same run) and pools that are rows of
    a wider tensor (a state's pool_sum is a slice of the graphs' buffers)."""
    from streamret_kernels.pool_runs import pool_runs

    hidden, run_cu, run_first, run_last, run_counts, open_sums, pool_sum, pool_count = random_runs(
        4, streams=5, d=20, dtype=torch.float32, most_runs=1)
    wide = torch.randn(5, 64, dtype=torch.float64)
    wide[:, 8:28] = pool_sum
    args = (hidden, run_cu, run_first, run_last, run_counts, open_sums, wide[:, 8:28], pool_count)
    means, open_after = pool_runs(*args, backend="triton")
    want_means, want_open = pool_runs_by_stream(*args)
    assert rel_err(means, want_means) <= 1e-6 and rel_err(open_after, want_open) <= 1e-6


def test_pool_runs_names_the_shapes_it_needs():
    from streamret_kernels.pool_runs import pool_runs

    hidden, run_cu, run_first, run_last, run_counts, open_sums, pool_sum, pool_count = random_runs(
        1, streams=3, d=8, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"pool_sum \(2, 8\).*pass \[T, D\]"):
        pool_runs(hidden, run_cu, run_first, run_last, run_counts, open_sums, pool_sum[:2], pool_count)


@interpreted
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunk_reads_q_k_v_from_fused_columns(fwd, dtype):
    lens, H, K, V = [5, 70, 33], 2, 16, 32
    T = sum(lens)
    q, k, v, _g = fused_buffer(T, [H * K, H * K, H * V, H * V], dtype, seed=6)
    k.mul_(K**-0.5)  # in place: k stays a view of the buffer
    q, k, v = q.view(T, H, K), k.view(T, H, K), v.view(T, H, V)
    assert q.stride(0) == k.stride(0) == v.stride(0) == 2 * H * (K + V)  # read in place, not copied
    cu = torch.tensor([0, *np.cumsum(lens).tolist()], dtype=torch.int32)
    lg = retention_log_decays(H, [0.97, 0.6])
    h0 = torch.randn(len(lens), H, K, V)
    with poisoned_allocations():
        o, ht = fwd.chunk_retention_triton(q, k, v, lg, cu_seqlens=cu, initial_state=h0)
    ro, rt = chunk_retention_reference(q.double(), k.double(), v.double(), lg, cu_seqlens=cu, initial_state=h0.double())
    assert rel_err(o, ro) <= TOL[dtype] and rel_err(ht, rt) <= TOL[dtype]


@interpreted
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("qk_layout", ["inplace", "compact"])
@pytest.mark.parametrize("fold", ["on", "off"])
def test_fused_model_matches_the_reference_layers(monkeypatch, dtype, qk_layout, fold):
    """The inference layout (packed projections, residual adds in the matmuls, every Triton op)
    computes the model of the plain PyTorch layers, with rotary in place on the projection's q and
    k columns or writing them out contiguous, with the norms folded into the projections or not."""
    from streamret.model.retnet import RetNetConfig, build_random, compact_qk, fold_norms

    monkeypatch.setenv("STREAMRET_QK_LAYOUT", qk_layout)
    monkeypatch.setenv("STREAMRET_NORM_FOLD", fold)
    assert compact_qk(16) == (qk_layout == "compact") and fold_norms() == (fold == "on")

    cfg = RetNetConfig(n_heads=2, head_k_dim=16, head_v_dim=32, d_model=64, ffn_dim=96, n_layers=2)
    model = build_random(cfg, seed=7, norm_spread=0.75).to(dtype)  # norms away from 1: folding them matters
    ids = torch.randint(0, cfg.vocab_size, (90,), generator=torch.Generator().manual_seed(8))
    cu = torch.tensor([0, 20, 20, 90])
    # streams that go on from a state (fresh ones start from no state tensors at all)
    ids2 = torch.randint(0, cfg.vocab_size, (50,), generator=torch.Generator().manual_seed(9))
    cu2 = torch.tensor([0, 10, 45, 50])
    with torch.no_grad():
        ref_model = build_random(cfg, seed=7, norm_spread=0.75).double()
        ref, ref_state = ref_model(ids, cu_seqlens=cu, fused=False)
        ref2, ref_state2 = ref_model(ids2, cu_seqlens=cu2, state=ref_state, fused=False)
        monkeypatch.setenv("STREAMRET_KERNEL_BACKEND", "triton")
        with poisoned_allocations():
            out, state = model(ids, cu_seqlens=cu, fused=True)
    assert out.dtype == dtype
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    assert rel_err(out, ref) <= tol
    for a, b in zip(state.layers, ref_state.layers, strict=True):
        assert rel_err(a, b) <= tol
    assert rel_err(state.pool_sum, ref_state.pool_sum) <= tol
    assert torch.equal(state.positions, ref_state.positions) and torch.equal(state.pool_count, ref_state.pool_count)
    with torch.no_grad():
        with poisoned_allocations():
            out2, state2 = model(ids2, cu_seqlens=cu2, state=state, fused=True)
    assert rel_err(out2, ref2) <= tol
    for a, b in zip(state2.layers, ref_state2.layers, strict=True):
        assert rel_err(a, b) <= tol


def test_packed_weight_follows_the_norm_and_keeps_a_slot_per_fold(monkeypatch):
    """The folded weight is rebuilt when the norm weight changes in place; the folded and unfolded
    packings live side by side (a CUDA graph captured with one keeps reading it when the other is
    built); float64 weights fold in float64."""
    from streamret.model.retnet import RetNetConfig, build_random, packed_weight

    cfg = RetNetConfig(n_heads=2, head_k_dim=16, head_v_dim=32, d_model=64, ffn_dim=96, n_layers=1)
    model = build_random(cfg, seed=3, norm_spread=0.5).double()
    mlp, norm = model.layers[0].mlp, model.layers[0].mlp_norm
    both = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]).detach()
    folded = packed_weight(mlp.gate_proj, mlp.up_proj, scale=norm.weight)
    plain = packed_weight(mlp.gate_proj, mlp.up_proj)
    assert torch.equal(plain, both)
    assert torch.equal(folded, both * norm.weight.detach()[None, :])  # float64 all the way: exact
    assert packed_weight(mlp.gate_proj, mlp.up_proj, scale=norm.weight) is folded  # kept, not rebuilt
    with torch.no_grad():
        norm.weight.mul_(2.0)
    again = packed_weight(mlp.gate_proj, mlp.up_proj, scale=norm.weight)
    assert again is not folded and torch.equal(again, both * norm.weight.detach()[None, :])
    assert packed_weight(mlp.gate_proj, mlp.up_proj) is plain  # the unfolded slot untouched
    ids = torch.randint(0, cfg.vocab_size, (40,), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():  # a float64 model on the fused path with the fold: float64 exact
        monkeypatch.setenv("STREAMRET_NORM_FOLD", "on")
        out, _ = model(ids, fused=True)
        ref, _ = model(ids, fused=False)
    assert rel_err(out, ref) <= 1e-12


def test_norm_fold_switch(monkeypatch):
    from streamret.model.retnet import fold_norms

    monkeypatch.delenv("STREAMRET_NORM_FOLD", raising=False)
    assert fold_norms()
    monkeypatch.setenv("STREAMRET_NORM_FOLD", "off")
    assert not fold_norms()
    monkeypatch.setenv("STREAMRET_NORM_FOLD", "yes")
    with pytest.raises(ValueError, match="STREAMRET_NORM_FOLD='yes'"):
        fold_norms()


def test_qk_layout_switch(monkeypatch):
    from streamret.model.retnet import compact_qk

    monkeypatch.delenv("STREAMRET_QK_LAYOUT", raising=False)
    assert not compact_qk(256) and not compact_qk(128)  # auto: in place (compact did not pay on the H200)
    monkeypatch.setenv("STREAMRET_QK_LAYOUT", "compact")
    assert compact_qk(256) and compact_qk(128)
    monkeypatch.setenv("STREAMRET_QK_LAYOUT", "inplace")
    assert not compact_qk(256)
    monkeypatch.setenv("STREAMRET_QK_LAYOUT", "contiguous")
    with pytest.raises(ValueError, match="compact"):
        compact_qk(64)


_CHUNK = "chunk_retention.triton_fwd"
_TWO_PASS = "chunk_retention.triton_two_pass"
SM90_CASES = {  # name: (module, kernel, 16-bit tensor dtype, constexprs, num_warps, num_stages)
    "chunk bf16 K128 one launch": (_CHUNK, "_chunk_fwd_kernel", "bf16", dict(
        H=8, K=128, V=256, BT=64, BK=128, BV=64, NV=4, SEGMENTED=False, HAS_H0=True, STORE_HT=True,
        STORE_O=True, F32_STATE_DOT=False, SPLIT=True), 4, 2),
    "chunk bf16 K256 segment states": (_CHUNK, "_chunk_fwd_kernel", "bf16", dict(
        H=8, K=256, V=512, BT=64, BK=256, BV=32, NV=16, SEGMENTED=True, HAS_H0=False, STORE_HT=True,
        STORE_O=False, F32_STATE_DOT=False, SPLIT=True), 4, 2),
    "chunk bf16 K256 BV64 8 warps": (_CHUNK, "_chunk_fwd_kernel", "bf16", dict(
        H=8, K=256, V=512, BT=64, BK=256, BV=64, NV=8, SEGMENTED=False, HAS_H0=True, STORE_HT=True,
        STORE_O=True, F32_STATE_DOT=False, SPLIT=True), 8, 2),
    "chunk fp16 K64 chunk 16": (_CHUNK, "_chunk_fwd_kernel", "fp16", dict(
        H=16, K=64, V=128, BT=16, BK=64, BV=128, NV=1, SEGMENTED=True, HAS_H0=True, STORE_HT=False,
        STORE_O=True, F32_STATE_DOT=True, SPLIT=False), 4, 2),
    "chunk fp32 K128": (_CHUNK, "_chunk_fwd_kernel", "fp32", dict(
        H=8, K=128, V=256, BT=32, BK=128, BV=32, NV=8, SEGMENTED=False, HAS_H0=False, STORE_HT=True,
        STORE_O=True, F32_STATE_DOT=True, SPLIT=False), 4, 1),
    "two-pass states bf16 K256": (_TWO_PASS, "_span_states_kernel", "bf16", dict(
        H=8, K=256, V=512, BT=64, BK=64, BV=64, NK=4, NV=8, STATE_EVERY=128, SEGMENTED=False, HAS_H0=True,
        STORE_SPANS=True), 4, 2),
    **{f"two-pass wide states bf16 K256{' from a state' if h0 else ''}": (_TWO_PASS, "_span_states_kernel", "bf16",
        dict(H=8, K=256, V=512, BT=64, BK=128, BV=128, NK=2, NV=4, STATE_EVERY=128, SEGMENTED=False, HAS_H0=h0,
             STORE_SPANS=True), 8, 2) for h0 in (False, True)},
    "two-pass narrow states bf16 K256 3 stages": (_TWO_PASS, "_span_states_kernel", "bf16", dict(
        H=8, K=256, V=512, BT=128, BK=64, BV=64, NK=4, NV=8, STATE_EVERY=128, SEGMENTED=False, HAS_H0=True,
        STORE_SPANS=True), 4, 3),
    "two-pass segment states bf16 K256": (_TWO_PASS, "_span_states_kernel", "bf16", dict(
        H=8, K=256, V=512, BT=64, BK=64, BV=64, NK=4, NV=8, STATE_EVERY=128, SEGMENTED=True, HAS_H0=True,
        STORE_SPANS=True), 4, 2),
    "two-pass outputs bf16 K256": (_TWO_PASS, "_span_outputs_kernel", "bf16", dict(
        H=8, K=256, V=512, BT=128, BK=256, BV=64, STATE_EVERY=128, F32_STATE_DOT=False, SPLIT=True,
        SEGMENT_FIX="off", SPAN_STAGES=0), 8, 3),
    "two-pass outputs bf16 K256 segment fix product": (_TWO_PASS, "_span_outputs_kernel", "bf16", dict(
        H=8, K=256, V=512, BT=128, BK=256, BV=32, STATE_EVERY=128, F32_STATE_DOT=False, SPLIT=True,
        SEGMENT_FIX="product", SPAN_STAGES=0), 8, 3),
    # states every 256 tokens (2 row blocks a span): at BV 64 the second block's loop (3 v / hs tiles a stage)
    # fits 2 stages only (272 KB at 3), SPAN_STAGES; at BV 32, 3 stages
    **{f"two-pass outputs bf16 K256 spans of 256 BV{bv}": (_TWO_PASS, "_span_outputs_kernel", "bf16", dict(
        H=8, K=256, V=512, BT=128, BK=256, BV=bv, STATE_EVERY=256, F32_STATE_DOT=False, SPLIT=True,
        SEGMENT_FIX="off", SPAN_STAGES=span), 8, 3) for bv, span in ((64, 2), (32, 0))},
    **{f"two-pass keys outputs bf16 K256 {fix}": (_TWO_PASS, "_attn_outputs_kernel", "bf16", dict(
        H=8, K=256, V=512, BT=128, BK=256, BV=256, NV=2, BKEY=64, KS=64, STATE_EVERY=512, F32_STATE_DOT=False,
        SEGMENT_FIX=fix), 8, 2) for fix in ("off", "product")},
    "two-pass outputs fp32 K128": (_TWO_PASS, "_span_outputs_kernel", "fp32", dict(
        H=8, K=128, V=256, BT=32, BK=128, BV=32, STATE_EVERY=64, F32_STATE_DOT=True, SPLIT=False,
        SEGMENT_FIX="product", SPAN_STAGES=0), 4, 2),
    "two-pass outputs fp16 K128 segment fix": (_TWO_PASS, "_span_outputs_kernel", "fp16", dict(
        H=8, K=128, V=256, BT=128, BK=128, BV=32, STATE_EVERY=128, F32_STATE_DOT=True, SPLIT=False,
        SEGMENT_FIX="product", SPAN_STAGES=0), 8, 3),
    "segment scan": (_CHUNK, "_segment_scan_kernel", "fp32", dict(
        H=8, K=128, V=256, BK=32, BV=64, NK=4, NV=4, HAS_H0=True), 4, 1),
    "rms norm d2048": ("rms_norm.triton_norm", "_rms_norm_kernel", "bf16", dict(
        D=2048, BD=2048, BR=2, FACTOR_ONLY=False), 4, 1),
    "inv rms d2048": ("rms_norm.triton_norm", "_rms_norm_kernel", "bf16", dict(
        D=2048, BD=2048, BR=2, FACTOR_ONLY=True), 4, 1),
    "rotary K256": ("rotary.triton_rotary", "_rotary_kernel", "bf16", dict(
        H=16, HALF=128, BH=128, BR=16, HAS_SCALE=False, SQUARED_FROM=16), 4, 1),
    "rotary K256 scaled": ("rotary.triton_rotary", "_rotary_kernel", "bf16", dict(
        H=16, HALF=128, BH=128, BR=16, HAS_SCALE=True, SQUARED_FROM=8), 4, 1),
    "gated norm V128": ("gated_norm.triton_gated_norm", "_gated_norm_kernel", "bf16", dict(
        H=4, V=128, BV=128, BR=32, HAS_SCALE=False), 4, 1),
    "gated norm V512 scaled": ("gated_norm.triton_gated_norm", "_gated_norm_kernel", "bf16", dict(
        H=8, V=512, BV=512, BR=2, HAS_SCALE=True), 2, 1),
    "swiglu": ("swiglu.triton_swiglu", "_swiglu_kernel", "bf16", dict(F=896, BF=1024, HAS_SCALE=False), 4, 1),
    "swiglu scaled": ("swiglu.triton_swiglu", "_swiglu_kernel", "bf16", dict(F=2816, BF=4096, HAS_SCALE=True), 4, 1),
    "segment sum": ("segment_sum.triton_segment_sum", "_segment_sum_kernel", "bf16", dict(D=384, BT=128, BD=128), 4, 1),
    "pool runs": ("pool_runs.triton_pool_runs", "_pool_runs_kernel", "bf16", dict(D=384, BR=64, BD=32), 4, 1),
}
# pointers that are not to the 16-bit tensor dtype; other non-constexpr arguments are 32-bit
# integers except these floats
POINTERS = {"cu_seqlens": "*i32", "seq_of_row": "*i32", "seq_of_block": "*i32", "sums": "*fp64"} | {
    name: "*i64" for name in ("run_cu", "run_first", "run_last", "run_counts", "pool_count")} | {
    name: "*fp64" for name in ("pooled", "open_sums", "pool_sum")} | {
    name: "*fp32" for name in ("log_decay", "h0", "ht", "local", "seg_init", "cos", "sin", "row_scale", "g_scale")}
FLOAT_ARGS = {"scale", "eps"}

SM90_SCRIPT = """
import importlib, json, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

cases, pointers, float_args = json.loads(sys.argv[1])
for name, (module, kernel_name, dtype, consts, warps, stages) in cases.items():
    kernel = getattr(importlib.import_module("streamret_kernels." + module), kernel_name)
    sig = {}
    for arg in kernel.arg_names:
        if arg in consts:
            sig[arg] = "constexpr"
        elif arg in float_args:
            sig[arg] = "fp32"
        elif arg in ("hs", "seg_init") and consts.get("F32_STATE_DOT"):  # float32 span states (fp16 / fp32 inputs)
            sig[arg] = "*fp32"
        elif arg in ("w", "y") and consts.get("FACTOR_ONLY"):  # inv_rms: float32 factors out, no weight
            sig[arg] = "*fp32"
        elif arg == "seg_init" and consts.get("SEGMENT_FIX") == "product":  # in the span states' dtype
            sig[arg] = "*" + dtype
        elif arg in pointers:
            sig[arg] = pointers[arg]
        elif arg.startswith(("n_", "has_", "seg_len", "stride")) or arg == "T":
            sig[arg] = "i32"
        else:
            sig[arg] = "*" + dtype
    # as the launcher specializes pointers, and the row strides (H * K, H * V: multiples of 16): with them the
    # loads are pipelined as asynchronous copies, whose buffers are what fills shared memory
    attrs = {(i,): [["tt.divisibility", 16]] for i, a in enumerate(kernel.arg_names)
             if sig[a].startswith("*") or a.startswith("stride")}
    src = ASTSource(fn=kernel, signature=sig, constexprs=consts, attrs=attrs)
    try:
        out = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps, "num_stages": stages})
        if out.metadata.shared > 227 * 1024:  # sm90's most per block: launching would fail
            print("FAIL", name, "shared memory", out.metadata.shared, flush=True)
            continue
        print("OK", name, len(out.asm["cubin"]), "shared", out.metadata.shared, flush=True)
    except Exception as e:
        print("FAIL", name, type(e).__name__, str(e)[-2000:], flush=True)
"""


def test_kernels_compile_for_sm90():
    if CHILD:
        pytest.skip("runs in the parent (the compiler needs Triton out of interpreter mode)")
    """Compiles the real (not interpreted) kernels for an H100/H200 with Triton's bundled ptxas: the
    interpreter runs Python and misses what only the compiler checks (types carried through loops,
    shared memory, register allocation). A subprocess: the parent's Triton state is not ours to set."""

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    res = subprocess.run(
        [sys.executable, "-c", SM90_SCRIPT, json.dumps([SM90_CASES, POINTERS, sorted(FLOAT_ARGS)])],
        env=env, capture_output=True, text=True,
        timeout=300,
    )
    if "ptxas" in res.stderr and "No such file" in res.stderr:
        pytest.skip("this Triton build has no NVIDIA tools (ptxas)")
    ok = [line for line in res.stdout.splitlines() if line.startswith("OK")]
    assert len(ok) == len(SM90_CASES), res.stdout + res.stderr[-3000:]
