"""Triton pooling of a step's runs (the math is in reference.py beside this file), in two launches.

The runs' sums come from the segment-sum kernel, written into the first R rows of the output; then one program
per (stream, column block) takes its stream's runs in blocks of BR from the last, and in each block what the
later runs add is the block's total less a cumulative sum, plus what the blocks after it added (a long
document's stream holds hundreds of runs: BR at a time, not one). Two launches where the reference makes about
twenty torch calls: an engine step's thread makes this call, and each torch call from it may wait for the GIL
(streamret/engine/gil.py).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..segment_sum.triton_segment_sum import segment_sum_into


@triton.jit
def _pool_runs_kernel(pooled, run_cu, run_first, run_last, run_counts, open_sums, pool_sum, pool_count, n_runs,
                      n_streams, stride_open, stride_pool, D: tl.constexpr, BR: tl.constexpr, BD: tl.constexpr):
    n = tl.program_id(0)
    cols = tl.program_id(1) * BD + tl.arange(0, BD)
    mc = cols < D
    first = tl.load(run_first + n)
    last = tl.load(run_last + n)
    pool = tl.load(pool_sum + n * stride_pool + cols, mask=mc, other=0.0)
    count = tl.load(pool_count + n)
    tl.store(pooled + (2 * n_runs + n) * D + cols, pool / tl.maximum(count, 1).to(tl.float64), mask=mc)
    opened = tl.load(open_sums + n * stride_open + cols, mask=mc, other=0.0)
    carry = tl.zeros([BD], dtype=tl.float64)  # what the stream's runs after the block add to its pool
    carry_tokens = count * 0
    for b in range(0, tl.cdiv(last - first + 1, BR)):
        r = last + 1 - (b + 1) * BR + tl.arange(0, BR)  # the block's runs (the stream's first block is masked)
        mr = r >= first
        m = mr[:, None] & mc[None, :]
        rows = r[:, None] * D + cols[None, :]
        s = tl.load(pooled + rows, mask=m, other=0.0)  # the runs' own sums (segment_sum_into)
        t = tl.load(run_cu + r + 1, mask=mr, other=0) - tl.load(run_cu + r, mask=mr, other=0)
        total = tl.sum(s, 0)
        total_tokens = tl.sum(t, 0)
        later = total[None, :] - tl.cumsum(s, 0) + carry[None, :]
        later_tokens = total_tokens - tl.cumsum(t, 0) + carry_tokens
        after = tl.maximum(count - later_tokens, 1).to(tl.float64)
        tl.store(pooled + n_runs * D + rows, (pool[None, :] - later) / after[:, None], mask=m)
        carry += total
        carry_tokens += total_tokens
        # the segment open before the step continues in the stream's first run
        s += tl.where((r == first)[:, None], opened[None, :], 0.0)
        if b == 0:  # and the stream's last run stays open after it
            open_after = tl.sum(tl.where((r == last)[:, None], s, 0.0), 0)
            tl.store(pooled + (2 * n_runs + n_streams + n) * D + cols, open_after, mask=mc)
        counts = tl.maximum(tl.load(run_counts + r, mask=mr, other=1), 1).to(tl.float64)
        tl.store(pooled + rows, s / counts[:, None], mask=m)


def pool_runs_triton(hidden: torch.Tensor, run_cu: torch.Tensor, run_first: torch.Tensor, run_last: torch.Tensor,
                     run_counts: torch.Tensor, open_sums: torch.Tensor, pool_sum: torch.Tensor,
                     pool_count: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n_runs, n_streams, D = len(run_counts), len(run_first), hidden.shape[1]
    # one tensor: the runs' means, the pools after each run, the streams' pools, then the open sums after the step
    pooled = torch.zeros(2 * n_runs + 2 * n_streams, D, device=hidden.device, dtype=torch.float64)
    if n_streams:
        segment_sum_into(hidden, run_cu, pooled)  # (it checks hidden's dtype and device)
        BD = min(32, triton.next_power_of_2(D))  # a block of 64 runs x 32 float64 columns: 16 KB of registers
        _pool_runs_kernel[(n_streams, triton.cdiv(D, BD))](
            pooled, run_cu, run_first, run_last, run_counts, open_sums, pool_sum, pool_count, n_runs, n_streams,
            open_sums.stride(0), pool_sum.stride(0), D=D, BR=64, BD=BD, num_warps=4,
        )
    return pooled[: 2 * n_runs + n_streams], pooled[2 * n_runs + n_streams :]
