"""Triton per-sequence row sums (the math is in reference.py beside this file).

A program sums a [BT, BD] block of rows in float32, one partial sum per sequence the block
touches, and adds each into that sequence's float64 row with an atomic add. An add per block and
sequence, not per token: one long sequence does not serialise T atomic adds on the same addresses,
and no scan runs down the token axis.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..utils import check_inputs


@triton.jit
def _segment_sum_kernel(x, seq_of_row, sums, T, stride_x, D: tl.constexpr, BT: tl.constexpr, BD: tl.constexpr):
    rows = tl.program_id(0) * BT + tl.arange(0, BT)
    cols = tl.program_id(1) * BD + tl.arange(0, BD)
    mr = rows < T
    mc = cols < D
    xv = tl.load(x + rows[:, None].to(tl.int64) * stride_x + cols[None, :], mask=mr[:, None] & mc[None, :], other=0.0)
    xv = xv.to(tl.float32)
    seq = tl.load(seq_of_row + rows, mask=mr, other=-1)
    first = tl.min(tl.where(mr, seq, 2147483647), axis=0)
    last = tl.max(seq, axis=0)
    for s in range(first, last + 1):
        part = tl.sum(tl.where((seq == s)[:, None], xv, 0.0), axis=0)
        tl.atomic_add(sums + s * D + cols, part.to(tl.float64), mask=mc)


def segment_sum_triton(x: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
    check_inputs(x)
    T, D = x.shape
    if x.stride(-1) != 1:
        x = x.contiguous()
    cu = cu_seqlens.to(device=x.device, dtype=torch.long)
    n = cu.numel() - 1
    out = torch.zeros(n, D, device=x.device, dtype=torch.float64)
    if T:
        seq_of_row = torch.repeat_interleave(
            torch.arange(n, device=x.device, dtype=torch.int32), cu[1:] - cu[:-1], output_size=T
        )
        BT, BD = 128, min(128, triton.next_power_of_2(D))
        _segment_sum_kernel[(triton.cdiv(T, BT), triton.cdiv(D, BD))](
            x, seq_of_row, out, T, x.stride(0), D=D, BT=BT, BD=BD, num_warps=4,
        )
    return out
