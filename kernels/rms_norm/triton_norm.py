"""Triton RMSNorm (the math is in reference.py beside this file): one pass, a block of rows a
program; or its per-row factor alone (one read of x, 4 bytes written a row)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..utils import check_inputs, next_pow2


@triton.jit
def _rms_norm_kernel(
    x, w, y, n_rows, stride_x, eps, D: tl.constexpr, BD: tl.constexpr, BR: tl.constexpr, FACTOR_ONLY: tl.constexpr,
):
    rows = tl.program_id(0) * BR + tl.arange(0, BR)
    cols = tl.arange(0, BD)
    mc = cols < D
    m = (rows < n_rows)[:, None] & mc[None, :]
    xv = tl.load(x + rows[:, None].to(tl.int64) * stride_x + cols[None, :], mask=m, other=0.0).to(tl.float32)
    r = 1.0 / tl.sqrt(tl.sum(xv * xv, axis=1) / D + eps)
    if FACTOR_ONLY:  # y is [rows] float32
        tl.store(y + rows, r, mask=rows < n_rows)
    else:
        wv = tl.load(w + cols, mask=mc, other=0.0).to(tl.float32)
        out = xv * r[:, None] * wv[None, :]
        tl.store(y + rows[:, None].to(tl.int64) * D + cols[None, :], out.to(y.dtype.element_ty), mask=m)


def rows_per_program(D: int) -> int:
    """Enough rows that a program holds about 4096 elements (narrow rows would leave lanes idle)."""
    return max(1, 4096 // next_pow2(D))


def _launch(x: torch.Tensor, weight: torch.Tensor | None, eps: float, rows: int | None, num_warps: int | None):
    check_inputs(x)
    D = x.shape[-1]
    x2 = x.reshape(-1, D)
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    R = x2.shape[0]
    factor_only = weight is None
    if factor_only:
        y = torch.empty(R, device=x.device, dtype=torch.float32)
    else:
        y = torch.empty(x2.shape, device=x.device, dtype=x.dtype)
    if R:
        BR = rows or rows_per_program(D)
        _rms_norm_kernel[(triton.cdiv(R, BR),)](
            x2, y if factor_only else weight.contiguous(), y, R, x2.stride(0), float(eps), D=D, BD=next_pow2(D),
            BR=BR, FACTOR_ONLY=factor_only, num_warps=num_warps or (4 if D <= 2048 else 8),
        )
    return y


def rms_norm_triton(
    x: torch.Tensor, weight: torch.Tensor, eps: float, *, rows_per_program: int | None = None,
    num_warps: int | None = None,
) -> torch.Tensor:
    """rows_per_program (a power of two) and num_warps: the tiling (None: the defaults; benchmarks sweep them)."""
    return _launch(x, weight, eps, rows_per_program, num_warps).view(x.shape)


def inv_rms_triton(
    x: torch.Tensor, eps: float, *, rows_per_program: int | None = None, num_warps: int | None = None
) -> torch.Tensor:
    """1 / sqrt(mean(x^2) + eps) over the last dim: float32 [x.shape[:-1]]."""
    return _launch(x, None, eps, rows_per_program, num_warps).view(x.shape[:-1])
