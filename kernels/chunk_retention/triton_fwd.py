"""Triton forward of chunkwise retention (the math is in reference.py beside this file).

One program owns one (work item, head, V-block). It walks the item's chunks in order and keeps its
[K, BV] slice of the state in float32 registers, so per-chunk states never reach device memory
(fla writes each chunk's state out and reads it back). A work item is a whole sequence. When the
sequences are too few to fill the GPU (a handful of long ones), each sequence is cut into segments
and the work takes three launches:

  1. every segment's own contribution to the state, from a zero state (parallel over segments);
  2. a short scan over each sequence's segments: each segment's incoming state, and the final state;
  3. every segment's outputs from its incoming state (parallel over segments).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import triton
import triton.language as tl

from ..utils import check_inputs, dot_precision, next_pow2, num_sms


@triton.jit
def _dot_f32_left(a, b, acc, SPLIT: tl.constexpr, PRECISION: tl.constexpr):
    """acc + a @ b for a float32 `a` and a 16-bit `b`: `a` is rounded to b's dtype for the tensor
    cores; SPLIT adds the rounding residue's product, so `a` keeps about 16 bits instead of 8."""
    hi = a.to(b.dtype)
    acc = tl.dot(hi, b, acc=acc, input_precision=PRECISION)
    if SPLIT:
        acc = tl.dot((a - hi.to(tl.float32)).to(b.dtype), b, acc=acc)
    return acc


@triton.jit
def _dot_f32_right(a, b, SPLIT: tl.constexpr, PRECISION: tl.constexpr):
    """a @ b for a 16-bit `a` and a float32 `b` (see _dot_f32_left)."""
    hi = b.to(a.dtype)
    out = tl.dot(a, hi, input_precision=PRECISION)
    if SPLIT:
        out = tl.dot(a, (b - hi.to(tl.float32)).to(a.dtype), acc=out)
    return out


@triton.jit
def _chunk_fwd_kernel(
    q, k, v, o, log_decay, h0, ht, bos_ptr, eos_ptr, scale,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, NV: tl.constexpr,
    HAS_H0: tl.constexpr, STORE_HT: tl.constexpr, STORE_O: tl.constexpr,
    STATE_DOT_F32: tl.constexpr, SPLIT: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    pid = tl.program_id(0)
    iv = pid % NV
    h = (pid // NV) % H
    item = pid // (NV * H)
    bos = tl.load(bos_ptr + item).to(tl.int64)
    L = (tl.load(eos_ptr + item) - bos).to(tl.int32)
    lg = tl.load(log_decay + h).to(tl.float32)

    # 64-bit scalar bases (T * H * V and N * H * K * V may pass 2^31), 32-bit tile offsets: offset
    # tiles live in registers for the whole loop, so they are kept small. Columns are masked only
    # when K or V is not a whole number of tiles.
    it = tl.arange(0, BT)
    ik = tl.arange(0, BK)
    jv = iv * BV + tl.arange(0, BV)
    mk = ik < K
    mv = jv < V
    state_tile = ik[:, None] * V + jv[None, :]
    state_base = (item * H + h).to(tl.int64) * (K * V)
    if HAS_H0:
        if K == BK and V % BV == 0:
            S = tl.load(h0 + state_base + state_tile)
        else:
            S = tl.load(h0 + state_base + state_tile, mask=mk[:, None] & mv[None, :], other=0.0)
    else:
        S = tl.zeros([BK, BV], dtype=tl.float32)

    # Decay powers in log space, the same for every chunk, with `scale` folded in:
    # scale * g^(i-j) for j <= i, and scale * g^(i+1).
    fi = it.to(tl.float32)
    diff = fi[:, None] - fi[None, :]
    D = tl.where(diff >= 0, scale * tl.exp(lg * tl.maximum(diff, 0.0)), 0.0)
    q_decay = scale * tl.exp(lg * (fi + 1.0))

    qk_tile = it[:, None] * (H * K) + ik[None, :]
    vo_tile = it[:, None] * (H * V) + jv[None, :]
    q_seq, k_seq = q + (bos * H + h) * K, k + (bos * H + h) * K
    v_seq, o_seq = v + (bos * H + h) * V, o + (bos * H + h) * V
    for i0 in range(0, L, BT):
        mt = (i0 + it) < L
        m_qk = mt[:, None] if K == BK else mt[:, None] & mk[None, :]
        m_vo = mt[:, None] if V % BV == 0 else mt[:, None] & mv[None, :]
        kc = tl.load(k_seq + i0 * (H * K) + qk_tile, mask=m_qk, other=0.0)
        vc = tl.load(v_seq + i0 * (H * V) + vo_tile, mask=m_vo, other=0.0)
        if STORE_O:
            qc = tl.load(q_seq + i0 * (H * K) + qk_tile, mask=m_qk, other=0.0)
            A = tl.dot(qc, tl.trans(kc), input_precision=DOT_PRECISION) * D
            if STATE_DOT_F32:  # float16 would overflow on large states: keep S in float32 (tf32 products)
                oc = tl.dot(qc.to(tl.float32), S, input_precision=DOT_PRECISION)
            else:
                oc = _dot_f32_right(qc, S, SPLIT, DOT_PRECISION)
            oc = _dot_f32_left(A, vc, oc * q_decay[:, None], SPLIT, DOT_PRECISION)
            tl.store(o_seq + i0 * (H * V) + vo_tile, oc.to(o.dtype.element_ty), mask=m_vo)
        n = tl.minimum(L - i0, BT).to(tl.float32)
        # S <- g^n S + k^T (g^(n-1-j) v_j): the decay goes on v (BT x BV), so k feeds the tensor cores as loaded
        v_decay = tl.where(mt, tl.exp(lg * tl.maximum(n - 1.0 - fi, 0.0)), 0.0)  # rows past the end: 0
        vd = (vc * v_decay[:, None]).to(vc.dtype)
        S = tl.dot(tl.trans(kc), vd, acc=S * tl.exp(lg * n), input_precision=DOT_PRECISION)
    if STORE_HT:
        if K == BK and V % BV == 0:
            tl.store(ht + state_base + state_tile, S)
        else:
            tl.store(ht + state_base + state_tile, S, mask=mk[:, None] & mv[None, :])


@triton.jit
def _segment_scan_kernel(
    local, seg_init, h0, ht, seg_first, seg_bos, seg_eos, log_decay,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
    NK: tl.constexpr, NV: tl.constexpr, HAS_H0: tl.constexpr,
):
    """Carries the state across one sequence's segments: S <- g^len S + (segment's own contribution)."""
    pid = tl.program_id(0)
    iv = pid % NV
    ik = (pid // NV) % NK
    h = (pid // (NV * NK)) % H
    n = pid // (NV * NK * H)
    lg = tl.load(log_decay + h).to(tl.float32)
    rk = ik * BK + tl.arange(0, BK)
    rv = iv * BV + tl.arange(0, BV)
    m = (rk < K)[:, None] & (rv < V)[None, :]
    tile = h * (K * V) + rk[:, None] * V + rv[None, :]
    seq_off = n.to(tl.int64) * (H * K * V)
    if HAS_H0:
        S = tl.load(h0 + seq_off + tile, mask=m, other=0.0)
    else:
        S = tl.zeros([BK, BV], dtype=tl.float32)
    first = tl.load(seg_first + n).to(tl.int32)
    last = tl.load(seg_first + n + 1).to(tl.int32)
    init_ptrs = seg_init + first.to(tl.int64) * (H * K * V) + tile
    local_ptrs = local + first.to(tl.int64) * (H * K * V) + tile
    for s in range(first, last):
        tl.store(init_ptrs, S, mask=m)
        seg_len = (tl.load(seg_eos + s) - tl.load(seg_bos + s)).to(tl.float32)
        S = S * tl.exp(lg * seg_len) + tl.load(local_ptrs, mask=m, other=0.0)
        init_ptrs += H * K * V
        local_ptrs += H * K * V
    tl.store(ht + seq_off + tile, S, mask=m)


@dataclass(frozen=True)
class ChunkConfig:
    """Tile sizes: BT tokens per chunk, BV state columns per program; Triton's warps and pipeline depth.

    split_bf16: with bf16 inputs, the float32 operands of the output's tensor-core products (the
    state and the decayed scores) go in as a bf16 value plus a bf16 residue (two products each).
    Measured on the CPU at K128 V256: relative error of o 1.9e-3 instead of 2.5e-3 (fla's numerics),
    against 1.7e-3 from rounding o itself to bf16.
    """

    BT: int = 64
    BV: int = 64
    num_warps: int = 4
    num_stages: int = 2
    split_bf16: bool = True


def pick_config(K: int, V: int, dtype: torch.dtype, avg_len: float) -> ChunkConfig:
    """Heuristic table. The state slice [K, BV] lives in registers: 8 warps from K = 128 keep it
    and the chunk's products under 255 registers a thread without spilling (sm_90 compiler report).
    bench/kernels.py --sweep times the alternatives (bench/RESULTS.md)."""
    bt = 16 if avg_len <= 16 else 32 if avg_len <= 32 else 64
    if K <= 64:
        cfg = ChunkConfig(BT=bt, BV=64, num_warps=4)
    elif K <= 128:
        cfg = ChunkConfig(BT=bt, BV=64, num_warps=8)
    else:
        cfg = ChunkConfig(BT=bt, BV=32, num_warps=8)
    cfg = replace(cfg, BV=min(cfg.BV, max(16, next_pow2(V))))
    if dtype == torch.float32:  # twice the bytes per tile: smaller tiles fit shared memory
        cfg = replace(cfg, BT=min(cfg.BT, 32), BV=min(cfg.BV, 32), num_stages=1)
    return cfg


def plan_segment_len(N: int, T: int, H: int, NV: int, BT: int, sms: int) -> int:
    """0 (one program walks a whole sequence) when N * H * NV programs fill the GPU's `sms`
    multiprocessors; otherwise a segment length, a multiple of BT, giving about 8 programs per multiprocessor."""
    if N * H * NV >= 2 * sms or T < 4 * N * BT:
        return 0
    return max(4 * BT, triton.cdiv(triton.cdiv(T * H * NV, 8 * sms), BT) * BT)


def _segments(cu: torch.Tensor, T: int, seg_len: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cuts each sequence into pieces of seg_len tokens without a host sync.

    Returns seg_bos, seg_eos [S_max] (entries past the real count are empty: bos = eos = 0) and
    seg_first [N+1] (sequence n owns segments seg_first[n] .. seg_first[n+1]-1). S_max = N + T // seg_len
    bounds the count, since each sequence of length L needs ceil(L / seg_len) <= L / seg_len + 1.
    """
    cu = cu.to(torch.int64)
    N = cu.numel() - 1
    lens = cu[1:] - cu[:-1]
    seg_first = torch.zeros(N + 1, dtype=torch.int64, device=cu.device)
    seg_first[1:] = torch.cumsum((lens + seg_len - 1) // seg_len, 0)
    s = torch.arange(N + T // seg_len, device=cu.device)
    n = torch.searchsorted(seg_first[1:], s, right=True).clamp_(max=N - 1)
    valid = s < seg_first[N]
    bos = cu[n] + (s - seg_first[n]) * seg_len
    eos = torch.minimum(bos + seg_len, cu[n + 1])
    zero = torch.zeros_like(bos)
    return torch.where(valid, bos, zero), torch.where(valid, eos, zero), seg_first


def chunk_retention_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor,
    *,
    cu_seqlens: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    scale: float | None = None,
    segment_len: int | None = None,
    config: ChunkConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as chunk_retention_reference; initial_state is only read.

    segment_len: None plans it (plan_segment_len), 0 never cuts sequences, a positive length forces
    that cut (tests and benchmarks; any length gives the same result). config: tile sizes (None: pick_config).
    """
    check_inputs(q, k=k, v=v)
    T, H, K = q.shape
    V = v.shape[-1]
    if K > 256:
        raise ValueError(f"head K={K} > 256 does not fit one program's state tile; split heads or use backend='torch'")
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    dev = q.device
    cu = torch.tensor([0, T], device=dev) if cu_seqlens is None else cu_seqlens.to(dev).contiguous()
    N = cu.numel() - 1
    scale = K**-0.5 if scale is None else float(scale)
    lg = log_decay.to(device=dev, dtype=torch.float32).contiguous()
    h0 = None if initial_state is None else initial_state.to(device=dev, dtype=torch.float32).contiguous()
    cfg = config or pick_config(K, V, q.dtype, T / max(N, 1))
    BK, BV = max(16, next_pow2(K)), min(cfg.BV, max(16, next_pow2(V)))
    NV = triton.cdiv(V, BV)
    if segment_len is None:
        segment_len = plan_segment_len(N, T, H, NV, cfg.BT, num_sms(dev))
    if segment_len < 0:
        raise ValueError(f"segment_len={segment_len}; pass None (planned), 0 (no cuts) or a positive length")

    o = torch.empty(T, H, V, device=dev, dtype=q.dtype)
    final = torch.empty(N, H, K, V, device=dev, dtype=torch.float32)
    consts = dict(
        H=H, K=K, V=V, BT=cfg.BT, BK=BK, BV=BV, NV=NV,
        STATE_DOT_F32=q.dtype != torch.bfloat16, SPLIT=cfg.split_bf16 and q.dtype == torch.bfloat16,
        DOT_PRECISION=dot_precision(q.dtype),
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
    if T == 0:  # nothing to read: every state passes through
        return o, final.zero_() if h0 is None else final.copy_(h0)
    if not segment_len:
        _chunk_fwd_kernel[(N * H * NV,)](
            q, k, v, o, lg, final if h0 is None else h0, final, cu, cu[1:], scale,
            HAS_H0=h0 is not None, STORE_HT=True, STORE_O=True, **consts,
        )
        return o, final

    seg_bos, seg_eos, seg_first = _segments(cu, T, segment_len)
    n_seg = seg_bos.numel()
    local = torch.empty(n_seg, H, K, V, device=dev, dtype=torch.float32)
    _chunk_fwd_kernel[(n_seg * H * NV,)](
        q, k, v, o, lg, local, local, seg_bos, seg_eos, scale,
        HAS_H0=False, STORE_HT=True, STORE_O=False, **consts,
    )
    seg_init = torch.empty_like(local)
    SK, SV = min(BK, 32), min(BV, 64)
    NSK, NSV = triton.cdiv(K, SK), triton.cdiv(V, SV)
    _segment_scan_kernel[(N * H * NSK * NSV,)](
        local, seg_init, final if h0 is None else h0, final, seg_first, seg_bos, seg_eos, lg,
        H=H, K=K, V=V, BK=SK, BV=SV, NK=NSK, NV=NSV, HAS_H0=h0 is not None, num_warps=4,
    )
    _chunk_fwd_kernel[(n_seg * H * NV,)](
        q, k, v, o, lg, seg_init, seg_init, seg_bos, seg_eos, scale,
        HAS_H0=True, STORE_HT=False, STORE_O=True, **consts,
    )
    return o, final
