"""Triton recurrent retention step (the math is in reference.py beside this file).

Pure streaming: each program reads one [K, BV] float32 tile of one stream's state, decays it, adds
k^T v, writes it back (in place or to a new tensor) and reduces q against it for BV outputs. The
state is the only large traffic, so the target is the device's copy bandwidth.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from ..utils import check_inputs, next_pow2


@triton.jit
def _recurrent_step_kernel(
    q, k, v, s_in, s_out, o, log_decay, scale,
    H: tl.constexpr, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, NV: tl.constexpr,
):
    pid = tl.program_id(0)
    iv = pid % NV
    nh = pid // NV  # stream * H + head
    h = nh % H
    ik = tl.arange(0, BK)
    jv = iv * BV + tl.arange(0, BV)
    mk = ik < K
    mv = jv < V
    qv = tl.load(q + nh * K + ik, mask=mk, other=0.0).to(tl.float32)
    kv = tl.load(k + nh * K + ik, mask=mk, other=0.0).to(tl.float32)
    vv = tl.load(v + nh * V + jv, mask=mv, other=0.0).to(tl.float32)
    g = tl.exp(tl.load(log_decay + h).to(tl.float32))
    off = nh.to(tl.int64) * (K * V) + ik[:, None] * V + jv[None, :]
    m = mk[:, None] & mv[None, :]
    S = tl.load(s_in + off, mask=m, other=0.0, eviction_policy="evict_first")
    S = S * g + kv[:, None] * vv[None, :]
    tl.store(s_out + off, S, mask=m, eviction_policy="evict_first")
    out = tl.sum(S * qv[:, None], axis=0) * scale
    tl.store(o + nh * V + jv, out.to(o.dtype.element_ty), mask=mv)


@dataclass(frozen=True)
class StepConfig:
    """BV state columns per program and Triton's warps."""

    BV: int = 64
    num_warps: int = 4


def pick_step_config(K: int, V: int) -> StepConfig:
    """64 state columns (32 at K = 256), 4 warps: within 3% of the best of 12 tiles at K = 64 and 128
    on the H200 (bench/RESULTS.md)."""
    bv = max(16, min(64, next_pow2(V), 8192 // next_pow2(K)))
    return StepConfig(BV=bv, num_warps=4)


def recurrent_retention_step_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    state: torch.Tensor,
    log_decay: torch.Tensor,
    *,
    scale: float | None = None,
    inplace: bool = False,
    config: StepConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as recurrent_retention_step_reference (state float32 [N, H, K, V])."""
    check_inputs(q, k=k, v=v)
    if state.dtype != torch.float32 or state.device != q.device:
        raise ValueError(f"state must be float32 on {q.device}, got {state.dtype} on {state.device}")
    if inplace and not state.is_contiguous():
        raise ValueError("inplace=True needs a contiguous state; pass state.contiguous() and keep that tensor")
    N, H, K = q.shape
    V = v.shape[-1]
    if K > 256:
        raise ValueError(f"head K={K} > 256 does not fit one program's state tile; use backend='torch'")
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    s_in = state.contiguous()
    s_out = s_in if inplace else torch.empty_like(s_in)
    o = torch.empty(N, H, V, device=q.device, dtype=q.dtype)
    if N == 0:
        return o, s_out
    cfg = config or pick_step_config(K, V)
    BK, BV = max(16, next_pow2(K)), min(cfg.BV, max(16, next_pow2(V)))
    NV = triton.cdiv(V, BV)
    lg = log_decay.to(device=q.device, dtype=torch.float32).contiguous()
    scale = K**-0.5 if scale is None else float(scale)
    _recurrent_step_kernel[(N * H * NV,)](
        q, k, v, s_in, s_out, o, lg, scale, H=H, K=K, V=V, BK=BK, BV=BV, NV=NV, num_warps=cfg.num_warps,
    )
    return o, s_out
