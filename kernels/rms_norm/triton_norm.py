"""Triton RMSNorm (the math is in reference.py beside this file): one pass, a block of rows a program."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..utils import check_inputs, next_pow2


@triton.jit
def _rms_norm_kernel(x, w, y, n_rows, stride_x, eps, D: tl.constexpr, BD: tl.constexpr, BR: tl.constexpr):
    rows = tl.program_id(0) * BR + tl.arange(0, BR)
    cols = tl.arange(0, BD)
    mc = cols < D
    m = (rows < n_rows)[:, None] & mc[None, :]
    xv = tl.load(x + rows[:, None].to(tl.int64) * stride_x + cols[None, :], mask=m, other=0.0).to(tl.float32)
    r = 1.0 / tl.sqrt(tl.sum(xv * xv, axis=1) / D + eps)
    wv = tl.load(w + cols, mask=mc, other=0.0).to(tl.float32)
    out = xv * r[:, None] * wv[None, :]
    tl.store(y + rows[:, None].to(tl.int64) * D + cols[None, :], out.to(y.dtype.element_ty), mask=m)


def rows_per_program(D: int) -> int:
    """Enough rows that a program holds about 4096 elements (narrow rows would leave lanes idle)."""
    return max(1, 4096 // next_pow2(D))


def rms_norm_triton(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    check_inputs(x)
    D = x.shape[-1]
    x2 = x.reshape(-1, D)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    y = torch.empty(x2.shape, device=x.device, dtype=x.dtype)
    R = x2.shape[0]
    if R:
        BR = rows_per_program(D)
        _rms_norm_kernel[(triton.cdiv(R, BR),)](
            x2, weight.contiguous(), y, R, x2.stride(0), float(eps), D=D, BD=next_pow2(D), BR=BR,
            num_warps=4 if D <= 2048 else 8,
        )
    return y.view(x.shape)
