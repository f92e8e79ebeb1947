"""A step's segment runs pooled: each run's mean, its stream's mean after it, each stream's after the step."""

from __future__ import annotations

import torch

from ..backend import check_backend
from .reference import pool_runs_reference


def pool_runs(hidden: torch.Tensor, run_cu: torch.Tensor, run_first: torch.Tensor, run_last: torch.Tensor,
              run_counts: torch.Tensor, open_sums: torch.Tensor, pool_sum: torch.Tensor, pool_count: torch.Tensor,
              *, backend: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """hidden [T, D]: a step's packed hidden states; run_cu [R+1]: its runs' offsets (int64, from 0 to T), stream n
    owning runs run_first[n]..run_last[n] (int64 [N]); run_counts [R] int64: the tokens each run's mean divides by;
    open_sums [N, D] float64: the segments open before the step (added to each stream's first run); pool_sum [N, D]
    float64 and pool_count [N] int64: the streams' pools after the step.

    Returns (means [R + R + N, D] float64: the runs', each run's stream's after the run, the streams' after the step;
    open sums after the step [N, D] float64: each stream's last run's sum). reference.py has the math."""
    n_runs, n_streams = len(run_counts), len(run_first)
    if (hidden.dim() != 2 or run_cu.shape != (n_runs + 1,) or run_last.shape != (n_streams,)
            or open_sums.shape != (n_streams, hidden.shape[1]) or pool_sum.shape != open_sums.shape
            or pool_count.shape != (n_streams,)):
        raise ValueError(f"pool_runs: hidden {tuple(hidden.shape)}, run_cu {tuple(run_cu.shape)}, run_first "
                         f"{tuple(run_first.shape)}, run_last {tuple(run_last.shape)}, run_counts "
                         f"{tuple(run_counts.shape)}, open_sums {tuple(open_sums.shape)}, pool_sum "
                         f"{tuple(pool_sum.shape)}, pool_count {tuple(pool_count.shape)}: pass [T, D], [R+1], [N], "
                         "[N], [R], [N, D], [N, D], [N]")
    if check_backend(backend, hidden) == "triton":
        from .triton_pool_runs import pool_runs_triton

        return pool_runs_triton(hidden, run_cu, run_first, run_last, run_counts, open_sums, pool_sum, pool_count)
    return pool_runs_reference(hidden, run_cu, run_first, run_last, run_counts, open_sums, pool_sum, pool_count)
