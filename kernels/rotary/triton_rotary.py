"""Triton rotary embedding (the math is in reference.py beside this file).

Works on strided views: q and k may be column ranges of one fused projection output (row stride
larger than H * D), and the rotation may be written back in place, so the fused layer never copies
q and k out of that buffer. An optional per-token scale multiplies the rotated rows (the fused
layer's RMSNorm, folded into the projection weights, leaves each token's 1/rms to apply here).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..utils import check_inputs, next_pow2


@triton.jit
def _rotary_kernel(
    x, y, cos, sin, row_scale, n_rows, stride_xt, stride_xh, stride_yt, stride_yh, stride_s,
    H: tl.constexpr, HALF: tl.constexpr, BH: tl.constexpr, BR: tl.constexpr, HAS_SCALE: tl.constexpr,
    SQUARED_FROM: tl.constexpr,
):
    rows = tl.program_id(0) * BR + tl.arange(0, BR)  # row = token * H + head
    cols = tl.arange(0, BH)
    m = (rows < n_rows)[:, None] & (cols < HALF)[None, :]
    t = (rows // H).to(tl.int64)
    hd = rows % H
    xp = x + (t * stride_xt + hd * stride_xh)[:, None] + cols[None, :]
    yp = y + (t * stride_yt + hd * stride_yh)[:, None] + cols[None, :]
    cs = t[:, None] * HALF + cols[None, :]
    c = tl.load(cos + cs, mask=m, other=0.0)
    s = tl.load(sin + cs, mask=m, other=0.0)
    if HAS_SCALE:  # the token's scale folded into its angle's cos and sin
        r = tl.load(row_scale + t * stride_s, mask=rows < n_rows, other=0.0)
        r = tl.where(hd >= SQUARED_FROM, r * r, r)[:, None]
        c = c * r
        s = s * r
    x1 = tl.load(xp, mask=m, other=0.0).to(tl.float32)
    x2 = tl.load(xp + HALF, mask=m, other=0.0).to(tl.float32)
    tl.store(yp, (x1 * c - x2 * s).to(y.dtype.element_ty), mask=m)
    tl.store(yp + HALF, (x2 * c + x1 * s).to(y.dtype.element_ty), mask=m)


def rotary_triton(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, out: torch.Tensor, row_scale: torch.Tensor | None = None,
    squared_tail: int = 0, *, rows_per_program: int | None = None, num_warps: int = 4,
) -> torch.Tensor:
    """x, out [T, H, D] with unit stride along D (out may be x); cos, sin [T, D/2] float32;
    row_scale: None or [T] float32 (any stride); the last squared_tail heads take it squared.
    rows_per_program (a power of two; default: about 2048 elements a program) and num_warps: the
    tiling (benchmarks sweep them)."""
    check_inputs(x, out=out)
    T, H, D = x.shape
    if x.stride(-1) != 1 or out.stride(-1) != 1:
        raise ValueError("rotary_triton needs unit stride along the head dim; pass x.contiguous()")
    cos = cos.to(device=x.device, dtype=torch.float32).contiguous()
    sin = sin.to(device=x.device, dtype=torch.float32).contiguous()
    if row_scale is not None:
        row_scale = row_scale.to(device=x.device, dtype=torch.float32)
    half = D // 2
    BH = next_pow2(half)
    BR = rows_per_program or max(1, 2048 // BH)
    if T * H:
        _rotary_kernel[(triton.cdiv(T * H, BR),)](
            x, out, cos, sin, cos if row_scale is None else row_scale, T * H, x.stride(0), x.stride(1),
            out.stride(0), out.stride(1), 0 if row_scale is None else row_scale.stride(0),
            H=H, HALF=half, BH=BH, BR=BR, HAS_SCALE=row_scale is not None, SQUARED_FROM=H - squared_tail,
            num_warps=num_warps,
        )
    return out
