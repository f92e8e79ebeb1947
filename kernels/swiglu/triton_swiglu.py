"""Triton SwiGLU (the math is in reference.py beside this file). gate and up may be column ranges
of one fused [T, 2F] projection output: one read of each, one write."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..utils import check_inputs


@triton.jit
def _swiglu_kernel(gate, up, y, stride_g, stride_u, F: tl.constexpr, BF: tl.constexpr):
    t = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BF + tl.arange(0, BF)
    m = cols < F
    a = tl.load(gate + t * stride_g + cols, mask=m, other=0.0).to(tl.float32)
    b = tl.load(up + t * stride_u + cols, mask=m, other=0.0).to(tl.float32)
    tl.store(y + t * F + cols, (a / (1.0 + tl.exp(-a)) * b).to(y.dtype.element_ty), mask=m)


def swiglu_triton(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    check_inputs(gate, up=up)
    T, F = gate.shape
    if gate.stride(-1) != 1:
        gate = gate.contiguous()
    if up.stride(-1) != 1:
        up = up.contiguous()
    y = torch.empty(T, F, device=gate.device, dtype=gate.dtype)
    BF = min(1024, triton.next_power_of_2(F))
    if T:
        _swiglu_kernel[(T, triton.cdiv(F, BF))](gate, up, y, gate.stride(0), up.stride(0), F=F, BF=BF, num_warps=4)
    return y
