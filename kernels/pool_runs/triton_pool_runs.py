"""Triton pooling of a step's runs (the math is in reference.py beside this file), in two launches.

The runs' sums come from the segment-sum kernel, written into the first R rows of the output; then one program
per (stream, column block) walks its stream's runs from the last to the first, keeping what the later runs add,
and writes every mean of the stream. Two launches where the reference makes about twenty torch calls: an engine
step's thread makes this call, and each torch call from it may wait for the GIL (streamret/engine/gil.py).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..segment_sum.triton_segment_sum import segment_sum_into
from ..utils import check_inputs


@triton.jit
def _pool_runs_kernel(pooled, run_cu, run_first, run_last, run_counts, open_sums, pool_sum, pool_count, n_runs,
                      n_streams, stride_open, stride_pool, D: tl.constexpr, BD: tl.constexpr):
    n = tl.program_id(0)
    cols = tl.program_id(1) * BD + tl.arange(0, BD)
    mc = cols < D
    first = tl.load(run_first + n)
    last = tl.load(run_last + n)
    pool = tl.load(pool_sum + n * stride_pool + cols, mask=mc, other=0.0)
    count = tl.load(pool_count + n)
    later = tl.zeros([BD], dtype=tl.float64)  # what the stream's runs after r add to its pool
    later_tokens = count * 0
    for i in range(0, last - first + 1):
        r = last - i
        s = tl.load(pooled + r * D + cols, mask=mc, other=0.0)  # the run's own sum (segment_sum_into)
        after = tl.maximum(count - later_tokens, 1).to(tl.float64)
        tl.store(pooled + (n_runs + r) * D + cols, (pool - later) / after, mask=mc)
        later += s
        later_tokens += tl.load(run_cu + r + 1) - tl.load(run_cu + r)
        if r == first:  # the segment open before the step continues in the stream's first run
            s += tl.load(open_sums + n * stride_open + cols, mask=mc, other=0.0)
        if r == last:  # and the stream's last run stays open after it
            tl.store(pooled + (2 * n_runs + n_streams + n) * D + cols, s, mask=mc)
        tl.store(pooled + r * D + cols, s / tl.maximum(tl.load(run_counts + r), 1).to(tl.float64), mask=mc)
    tl.store(pooled + (2 * n_runs + n) * D + cols, pool / tl.maximum(count, 1).to(tl.float64), mask=mc)


def pool_runs_triton(hidden: torch.Tensor, run_cu: torch.Tensor, run_first: torch.Tensor, run_last: torch.Tensor,
                     run_counts: torch.Tensor, open_sums: torch.Tensor, pool_sum: torch.Tensor,
                     pool_count: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    check_inputs(hidden)
    n_runs, n_streams, D = len(run_counts), len(run_first), hidden.shape[1]
    # one tensor: the runs' means, the pools after each run, the streams' pools, then the open sums after the step
    pooled = torch.zeros(2 * n_runs + 2 * n_streams, D, device=hidden.device, dtype=torch.float64)
    if n_streams:
        segment_sum_into(hidden, run_cu, pooled)
        BD = min(128, triton.next_power_of_2(D))
        _pool_runs_kernel[(n_streams, triton.cdiv(D, BD))](
            pooled, run_cu, run_first, run_last, run_counts, open_sums, pool_sum, pool_count, n_runs, n_streams,
            open_sums.stride(0), pool_sum.stride(0), D=D, BD=BD, num_warps=1,
        )
    return pooled[: 2 * n_runs + n_streams], pooled[2 * n_runs + n_streams :]
