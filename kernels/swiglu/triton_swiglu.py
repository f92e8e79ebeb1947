"""Triton SwiGLU (the math is in reference.py beside this file). gate and up may be column ranges
of one fused [T, 2F] projection output: one read of each, one write."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..utils import check_inputs


@triton.jit
def _swiglu_kernel(
    gate, up, y, row_scale, stride_g, stride_u, stride_s, F: tl.constexpr, BF: tl.constexpr, HAS_SCALE: tl.constexpr,
):
    t = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BF + tl.arange(0, BF)
    m = cols < F
    a = tl.load(gate + t * stride_g + cols, mask=m, other=0.0).to(tl.float32)
    b = tl.load(up + t * stride_u + cols, mask=m, other=0.0).to(tl.float32)
    if HAS_SCALE:
        r = tl.load(row_scale + t * stride_s)
        a = a * r
        b = b * r
    tl.store(y + t * F + cols, (a / (1.0 + tl.exp(-a)) * b).to(y.dtype.element_ty), mask=m)


def swiglu_triton(
    gate: torch.Tensor, up: torch.Tensor, row_scale: torch.Tensor | None = None,
    *, block: int | None = None, num_warps: int = 4,
) -> torch.Tensor:
    """row_scale: None or [T] float32 (any stride). block (columns a program, a power of two;
    default min(4096, F rounded up)) and num_warps: the tiling (benchmarks sweep them)."""
    check_inputs(gate, up=up)
    T, F = gate.shape
    if gate.stride(-1) != 1:
        gate = gate.contiguous()
    if up.stride(-1) != 1:
        up = up.contiguous()
    if row_scale is not None:
        row_scale = row_scale.to(device=gate.device, dtype=torch.float32)
    y = torch.empty(T, F, device=gate.device, dtype=gate.dtype)
    # a whole row a program up to 4096 columns (H200, F 2816: 132 us against 137 at 1024; issue13.py 2026-12-02)
    BF = block or min(4096, triton.next_power_of_2(F))
    if T:
        _swiglu_kernel[(T, triton.cdiv(F, BF))](
            gate, up, y, gate if row_scale is None else row_scale, gate.stride(0), up.stride(0),
            0 if row_scale is None else row_scale.stride(0), F=F, BF=BF, HAS_SCALE=row_scale is not None,
            num_warps=num_warps,
        )
    return y
