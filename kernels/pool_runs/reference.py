"""PyTorch reference for pooling a step's runs (the engine's segment runs, `StepRuns` in streamret/engine/segments.py).

A step's packed tokens are cut into runs, consecutive within each stream (stream n owns runs first[n]..last[n]).
Per run r: its float64 sum, plus the open segment's sum where r is its stream's first run, divided by counts[r]
(its tokens, the open segment's earlier ones included): the run's mean. Per run too, its stream's pool after r's
last token: the stream's pool after the step less what the stream's later runs of the step add. Per stream, its
pool after the step. All three as means (counts below 1 count as 1), in one float64 tensor [R + R + N, D], and the
stream's last run's sum (with the open segment where that run is also the first) [N, D]: the segment left open.
"""

from __future__ import annotations

import torch

from ..segment_sum.reference import segment_sum_reference


def pool_runs_reference(hidden: torch.Tensor, run_cu: torch.Tensor, run_first: torch.Tensor, run_last: torch.Tensor,
                        run_counts: torch.Tensor, open_sums: torch.Tensor, pool_sum: torch.Tensor,
                        pool_count: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    sums = segment_sum_reference(hidden, run_cu)
    n_runs = len(run_counts)
    tokens = run_cu[1:] - run_cu[:-1]  # each run's own tokens
    owner = torch.repeat_interleave(torch.arange(len(run_first), device=sums.device), run_last - run_first + 1,
                                    output_size=n_runs)
    # what the later runs of its stream add to a run's sum: one cumulative sum over the step's runs
    later = sums.cumsum(0)
    later = later.index_select(0, run_last).index_select(0, owner) - later
    later_tokens = tokens.cumsum(0)
    later_tokens = later_tokens.index_select(0, run_last).index_select(0, owner) - later_tokens
    pools = pool_sum.index_select(0, owner) - later
    pool_counts = pool_count.index_select(0, owner) - later_tokens
    sums.index_add_(0, run_first, open_sums)
    counts = torch.cat([run_counts, pool_counts, pool_count])
    means = torch.cat([sums, pools, pool_sum]) / counts.clamp(min=1).unsqueeze(1)
    return means, sums.index_select(0, run_last)
