"""The Triton retention kernels on the GPU at real shapes, against a float64 reference (TF32 off),
with fresh random data and poisoned output buffers."""

from __future__ import annotations

import zlib

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
from streamret_kernels.utils import poisoned_allocations

pytestmark = pytest.mark.gpu
TOL = {torch.float32: 1e-5, torch.bfloat16: 3e-3, torch.float16: 3e-3}


@pytest.fixture(autouse=True)
def no_tf32():
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    assert torch.isfinite(x).all(), "non-finite values: an output element was not written"
    return ((x.double() - ref.double()).norm() / ref.double().norm()).item()


def ragged(n: int, max_len: int, seed: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(1, max_len + 1, (n,), generator=g).tolist()
    return [1, *lens[2:], 0] if n > 2 else lens  # a length-1 and an empty sequence among them


def chunk_inputs(lens: list[int], H: int, K: int, V: int, dtype: torch.dtype, seed: str, with_state: bool = True):
    """cu_seqlens, q, k, v, h0 (or None) and log decays on the GPU, random from a seed named by the test case."""
    g = torch.Generator(device="cuda").manual_seed(zlib.crc32(seed.encode()))
    T = sum(lens)
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], device="cuda", dtype=torch.int32)
    q = torch.randn(T, H, K, device="cuda", generator=g).to(dtype)
    k = (torch.randn(T, H, K, device="cuda", generator=g) * K**-0.5).to(dtype)
    v = torch.randn(T, H, V, device="cuda", generator=g).to(dtype)
    h0 = torch.randn(len(lens), H, K, V, device="cuda", generator=g) if with_state else None
    return cu, q, k, v, h0, retention_log_decays(H).cuda()


CHUNK_CASES = {  # name: (lengths, H, K, V, dtypes)
    "N1 T8192 (cut into segments)": ([8192], 8, 128, 256, (torch.bfloat16, torch.float16, torch.float32)),
    "N4096 L16": ([16] * 4096, 8, 128, 256, (torch.bfloat16,)),
    "N64 ragged <=700": (ragged(64, 700, 0), 8, 128, 256, (torch.bfloat16, torch.float32)),
    "N7 ragged H8 K256 V512": (ragged(7, 600, 1), 8, 256, 512, (torch.bfloat16, torch.float16, torch.float32)),
    "N300 ragged H16 K64 V128": (ragged(300, 90, 2), 16, 64, 128, (torch.bfloat16,)),
    "N2 B2 T4096 H8 K256 V512": ([4096, 4096], 8, 256, 512, (torch.bfloat16,)),
}
PARAMS = [(name, dt) for name, case in CHUNK_CASES.items() for dt in case[4]]


@pytest.mark.parametrize("name,dtype", PARAMS, ids=[f"{n}-{str(d)[6:]}" for n, d in PARAMS])
@pytest.mark.parametrize("with_state", [True, False])
def test_chunk_retention_gpu(name, dtype, with_state):
    lens, H, K, V, _ = CHUNK_CASES[name]
    cu, q, k, v, h0, lg = chunk_inputs(lens, H, K, V, dtype, f"{name} {dtype} {with_state}", with_state)
    h0_before = None if h0 is None else h0.clone()
    with poisoned_allocations():
        o, ht = chunk_retention(q, k, v, lg, cu_seqlens=cu, initial_state=h0, backend="triton")
    ro, rt = chunk_retention_reference(
        q.double(), k.double(), v.double(), lg, cu_seqlens=cu, initial_state=None if h0 is None else h0.double()
    )
    assert o.dtype == dtype and ht.dtype == torch.float32
    assert rel_err(o, ro) <= TOL[dtype]
    assert rel_err(ht, rt) <= TOL[dtype]
    if h0 is not None:
        assert torch.equal(h0, h0_before), "initial_state was modified"


def test_segment_cuts_do_not_change_the_result():
    from streamret_kernels.chunk_retention.triton_fwd import chunk_retention_triton

    H, K, V, T = 8, 128, 256, 20000
    q, k = (torch.randn(T, H, K, device="cuda") * s for s in (1.0, K**-0.5))
    v, h0 = torch.randn(T, H, V, device="cuda"), torch.randn(1, H, K, V, device="cuda")
    lg = retention_log_decays(H).cuda()
    whole = chunk_retention_triton(q, k, v, lg, initial_state=h0, segment_len=0)
    for seg in (None, 1000, 4096):
        cut = chunk_retention_triton(q, k, v, lg, initial_state=h0, segment_len=seg)
        for a, b in zip(whole, cut):
            assert rel_err(b, a) <= 1e-5, seg


@pytest.mark.parametrize("lens", ["ragged", "packed"])
@pytest.mark.parametrize("segment_len", [None, 256])
def test_many_sequences_cut_into_segments_at_the_default_layout(segment_len, lens):
    """The default model's heads (H4 K64 V128, bf16) over a step of 64 sequences, one of them long (ragged), or
    64 x 384 tokens (packed, the model's largest graph bucket): few programs, so the planner cuts the sequences
    into segments, each of whose scratch states has a slot of its own. Packed, a late sequence's programs past
    its end compute slots far past the scratch tensor's end (session 37: illegal memory accesses until they
    took their sequence's first slot)."""
    from streamret_kernels.chunk_retention.triton_fwd import chunk_retention_triton, plan_segment_len

    lens = [*ragged(63, 300, 3), 16000] if lens == "ragged" else [384] * 64
    H, K, V, T = 4, 64, 128, sum(lens)
    assert plan_segment_len(64, T, H, 1, 64, torch.cuda.get_device_properties(0).multi_processor_count) > 0
    g = torch.Generator(device="cuda").manual_seed(7)
    cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], device="cuda", dtype=torch.int32)
    q = torch.randn(T, H, K, device="cuda", generator=g).to(torch.bfloat16)
    k = (torch.randn(T, H, K, device="cuda", generator=g) * K**-0.5).to(torch.bfloat16)
    v = torch.randn(T, H, V, device="cuda", generator=g).to(torch.bfloat16)
    h0 = torch.randn(len(lens), H, K, V, device="cuda", generator=g)
    lg = retention_log_decays(H).cuda()
    ro, rt = chunk_retention_reference(q.double(), k.double(), v.double(), lg, cu_seqlens=cu,
                                       initial_state=h0.double())
    with poisoned_allocations():
        o, ht = chunk_retention_triton(q, k, v, lg, cu_seqlens=cu, initial_state=h0, segment_len=segment_len)
    assert rel_err(o, ro) <= TOL[torch.bfloat16] and rel_err(ht, rt) <= TOL[torch.bfloat16]
    torch.cuda.synchronize()  # an illegal access surfaces here at the latest


@pytest.mark.parametrize("algo", ["one_pass", "two_pass"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=lambda d: str(d)[6:])
def test_chunk_forms_at_k256(monkeypatch, algo, dtype):
    """Both forms of the chunk kernel (STREAMRET_CHUNK_ALGO) at the 1.3B heads, on a ragged batch."""
    monkeypatch.setenv("STREAMRET_CHUNK_ALGO", algo)
    cu, q, k, v, h0, lg = chunk_inputs(ragged(9, 900, 3), 8, 256, 512, dtype, f"forms {algo} {dtype}")
    with poisoned_allocations():
        o, ht = chunk_retention(q, k, v, lg, cu_seqlens=cu, initial_state=h0, backend="triton")
    ro, rt = chunk_retention_reference(q.double(), k.double(), v.double(), lg, cu_seqlens=cu, initial_state=h0.double())
    assert rel_err(o, ro) <= TOL[dtype] and rel_err(ht, rt) <= TOL[dtype]


def test_two_pass_segment_cuts_do_not_change_the_result(monkeypatch):
    from streamret_kernels.chunk_retention.triton_fwd import chunk_retention_triton

    monkeypatch.setenv("STREAMRET_CHUNK_ALGO", "two_pass")  # float32: float32 span states, no roundings
    H, K, V, T = 8, 256, 512, 20000
    q, k = (torch.randn(T, H, K, device="cuda") * s for s in (1.0, K**-0.5))
    v, h0 = torch.randn(T, H, V, device="cuda"), torch.randn(1, H, K, V, device="cuda")
    lg = retention_log_decays(H).cuda()
    whole = chunk_retention_triton(q, k, v, lg, initial_state=h0, segment_len=0)
    for seg in (None, 1000, 4096):
        cut = chunk_retention_triton(q, k, v, lg, initial_state=h0, segment_len=seg)
        for a, b in zip(whole, cut):
            assert rel_err(b, a) <= 1e-5, seg


@pytest.mark.parametrize("lens,segment_len", [
    ([32768], None), ([32768], 4096), ([9000, 300, 4096 + 77, 0, 1, 20000], 4096), ([2048] * 16, 512),
], ids=["B1 T32768 planned (uncut, narrow state tiles)", "B1 T32768 cut at 4096", "ragged cut at 4096",
        "packed 16 x 2048 cut at 512"])
@pytest.mark.parametrize("with_state", [True, False])
def test_two_pass_segment_fix_k256(lens, segment_len, with_state):
    """The 1.3B heads in bf16 with sequences cut into segments: one state pass plus the incoming
    states added by the output pass (product) and the second state pass (off), against float64."""
    from streamret_kernels.chunk_retention.triton_fwd import TwoPassConfig, chunk_retention_triton

    seed = f"segment fix {lens} {with_state}"
    cu, q, k, v, h0, lg = chunk_inputs(lens, 8, 256, 512, torch.bfloat16, seed, with_state)
    ro, rt = chunk_retention_reference(
        q.double(), k.double(), v.double(), lg, cu_seqlens=cu, initial_state=None if h0 is None else h0.double()
    )
    for fix in ("product", "off"):
        with poisoned_allocations():
            o, ht = chunk_retention_triton(q, k, v, lg, cu_seqlens=cu, initial_state=h0, segment_len=segment_len,
                                           config=TwoPassConfig(segment_fix=fix))
        assert rel_err(o, ro) <= TOL[torch.bfloat16], fix
        assert rel_err(ht, rt) <= TOL[torch.bfloat16], fix


@pytest.mark.parametrize("tiles", [(128, 64, 256, 8, 2, 512), (128, 64, 128, 8, 3, 512), (128, 32, 256, 8, 3, 256)],
                         ids=["BT128 BV256 spans 512", "BT128 BV128 spans 512", "BT128 keys 32 BV256 spans 256"])
def test_two_pass_keys_form_k256(tiles):
    """The keys output form at the 1.3B heads' real tiles in bf16 (some of bench/kernels.py's KEYS_TILES),
    ragged sequences with an initial state, whole and cut into segments, against float64."""
    from streamret_kernels.chunk_retention.triton_fwd import TwoPassConfig, chunk_retention_triton

    BT, kb, BV, warps, stages, every = tiles
    dtype = torch.bfloat16
    cu, q, k, v, h0, lg = chunk_inputs([*ragged(40, 1200, 3), 5000], 8, 256, 512, dtype, f"keys form {tiles}")
    ro, rt = chunk_retention_reference(q.double(), k.double(), v.double(), lg, cu_seqlens=cu, initial_state=h0.double())
    cfg = TwoPassConfig(output_form="keys", BT=BT, key_block=kb, BV=BV, num_warps=warps, num_stages=stages,
                        state_every=every)
    for segment_len in (0, 2048):
        with poisoned_allocations():
            o, ht = chunk_retention_triton(q, k, v, lg, cu_seqlens=cu, initial_state=h0, config=cfg,
                                           segment_len=segment_len)
        assert rel_err(o, ro) <= TOL[dtype], segment_len
        assert rel_err(ht, rt) <= TOL[dtype], segment_len


@pytest.mark.parametrize("dtype", list(TOL), ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("N,H,K,V", [(1, 8, 128, 256), (4096, 8, 128, 256), (64, 8, 256, 512), (512, 16, 64, 128)])
@pytest.mark.parametrize("inplace", [False, True])
def test_recurrent_step_gpu(dtype, N, H, K, V, inplace):
    g = torch.Generator(device="cuda").manual_seed(N + K)
    q = torch.randn(N, H, K, device="cuda", generator=g).to(dtype)
    k = (torch.randn(N, H, K, device="cuda", generator=g) * K**-0.5).to(dtype)
    v = torch.randn(N, H, V, device="cuda", generator=g).to(dtype)
    state = torch.randn(N, H, K, V, device="cuda", generator=g)
    before = state.clone()
    lg = retention_log_decays(H).cuda()
    with poisoned_allocations():
        o, new = recurrent_retention_step(q, k, v, state, lg, inplace=inplace, backend="triton")
    ro, rs = recurrent_retention_step_reference(q.double(), k.double(), v.double(), before.double(), lg)
    assert rel_err(o, ro) <= TOL[dtype]
    assert rel_err(new, rs) <= 1e-6
    assert (new is state) if inplace else torch.equal(state, before)


@pytest.mark.parametrize("cu_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_segment_sum_gpu(dtype, cu_dtype):
    """An engine step's segment runs (459 runs of 0-50 tokens, d 384) and one long sequence, on the device, against
    float64 sums."""
    from streamret_kernels.segment_sum import segment_sum, segment_sum_reference

    g = torch.Generator().manual_seed(21)
    for lens in (torch.randint(0, 51, (459,), generator=g).tolist(), [0, 70000, 0]):
        cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=cu_dtype, device="cuda")
        x = torch.randn(sum(lens), 384, device="cuda").to(dtype)
        with poisoned_allocations():
            s = segment_sum(x, cu)
        ref = segment_sum_reference(x.double(), cu)
        assert s.dtype == torch.float64 and rel_err(s, ref) <= 1e-6
        assert not s[torch.tensor(lens, device="cuda") == 0].any()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_pool_runs_gpu(dtype):
    """A step's runs at an engine's size (85 streams of up to 13 runs, d 384) and one long document's (2 streams of
    350 runs), on the device, against the run-by-run float64 pooling."""
    from streamret_kernels.pool_runs import pool_runs

    for seed, streams, most_runs, most_tokens in ((0, 85, 13, 60), (1, 2, 350, 120)):
        args = random_runs(seed, streams, 384, dtype, most_runs=most_runs, most_tokens=most_tokens)
        with poisoned_allocations():
            means, open_after = pool_runs(*(a.cuda() for a in args))
        want_means, want_open = pool_runs_by_stream(*args)
        assert rel_err(means.cpu(), want_means) <= 1e-6 and rel_err(open_after.cpu(), want_open) <= 1e-6
