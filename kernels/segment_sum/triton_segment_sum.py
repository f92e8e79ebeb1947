"""Triton per-sequence row sums (the math is in reference.py beside this file).

A program sums a [BT, BD] block of rows in float32, one partial sum per sequence the block
touches (each row's sequence found by a binary search over cu_seqlens), and adds each into that
sequence's float64 row with an atomic add. An add per block and
sequence, not per token: one long sequence does not serialise T atomic adds on the same addresses,
and no scan runs down the token axis.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..utils import check_inputs


@triton.jit
def _segment_sum_kernel(x, cu_seqlens, sums, T, n_seqs, stride_x, n_steps, D: tl.constexpr, BT: tl.constexpr,
                        BD: tl.constexpr):
    rows = tl.program_id(0) * BT + tl.arange(0, BT)
    cols = tl.program_id(1) * BD + tl.arange(0, BD)
    mr = rows < T
    mc = cols < D
    xv = tl.load(x + rows[:, None].to(tl.int64) * stride_x + cols[None, :], mask=mr[:, None] & mc[None, :], other=0.0)
    xv = xv.to(tl.float32)
    # each row's sequence: the last n with cu[n] <= row, by binary search over cu (cu[lo] <= row < cu[hi] holds
    # throughout; empty sequences are passed over), instead of a row-to-sequence map built by the caller
    lo = tl.zeros([BT], dtype=tl.int32)
    hi = tl.zeros([BT], dtype=tl.int32) + n_seqs
    for _ in range(n_steps):
        mid = (lo + hi) // 2
        right = tl.load(cu_seqlens + mid) <= rows
        lo = tl.where(right, mid, lo)
        hi = tl.where(right, hi, mid)
    seq = tl.where(mr, lo, -1)
    first = tl.min(tl.where(mr, seq, 2147483647), axis=0)
    last = tl.max(seq, axis=0)
    for s in range(first, last + 1):
        part = tl.sum(tl.where((seq == s)[:, None], xv, 0.0), axis=0)
        tl.atomic_add(sums + s * D + cols, part.to(tl.float64), mask=mc)


def segment_sum_triton(x: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(cu_seqlens.numel() - 1, x.shape[1], device=x.device, dtype=torch.float64)
    segment_sum_into(x, cu_seqlens, out)
    return out


def segment_sum_into(x: torch.Tensor, cu_seqlens: torch.Tensor, out: torch.Tensor) -> None:
    """Adds each sequence's row sum into row n of `out` (float64, contiguous, D columns, at least N rows): pass
    zeros for the sums alone, as `segment_sum_triton` and `pool_runs` do."""
    check_inputs(x)
    T, D = x.shape
    if x.stride(-1) != 1:
        x = x.contiguous()
    # few torch calls (an engine step's thread makes this one, and each call may wait for the GIL): cu_seqlens
    # is taken as it is when it already lies on x's device as int32 or int64
    cu = cu_seqlens
    if cu.device != x.device or cu.dtype not in (torch.int32, torch.int64) or not cu.is_contiguous():
        cu = cu.to(device=x.device, dtype=torch.long).contiguous()
    n = cu.numel() - 1
    if out.dtype != torch.float64 or out.shape[0] < n or out.shape[1:] != (D,) or not out.is_contiguous():
        raise ValueError(f"segment_sum_into: out is {out.dtype} {tuple(out.shape)}; pass a contiguous float64 "
                         f"tensor of at least {n} rows of {D}")
    if T:
        BT, BD = 128, min(128, triton.next_power_of_2(D))
        _segment_sum_kernel[(triton.cdiv(T, BT), triton.cdiv(D, BD))](
            x, cu, out, T, n, x.stride(0), n.bit_length() + 1, D=D, BT=BT, BD=BD, num_warps=4,
        )
