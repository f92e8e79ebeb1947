"""A step's segment runs at random, and their pooling written out run by run (the kernels' tests, CPU and GPU)."""

from __future__ import annotations

import numpy as np
import torch


def pool_runs_by_stream(hidden, run_cu, run_first, run_last, run_counts, open_sums, pool_sum, pool_count):
    """pool_runs written out run by run in float64: what the reference and the kernel must both give."""
    h = hidden.double()
    means, pools_after, open_after = {}, {}, []
    for n in range(len(run_first)):
        f, last = int(run_first[n]), int(run_last[n])
        for r in range(f, last + 1):
            s = h[run_cu[r] : run_cu[r + 1]].sum(0) + (open_sums[n] if r == f else 0)
            means[r] = s / max(int(run_counts[r]), 1)
            later = h[run_cu[r + 1] : run_cu[last + 1]]  # the stream's tokens after the run, in this step
            pools_after[r] = (pool_sum[n] - later.sum(0)) / max(int(pool_count[n]) - len(later), 1)
            if r == last:
                open_after.append(s)
    R = len(run_counts)
    rows = [means[r] for r in range(R)] + [pools_after[r] for r in range(R)]
    rows += list(pool_sum / pool_count.clamp(min=1).unsqueeze(1))
    return torch.stack(rows), torch.stack(open_after)


def random_runs(seed: int, streams: int, d: int, dtype: torch.dtype, most_runs: int = 6, most_tokens: int = 40):
    """A step's runs: streams of 1..most_runs runs of fewer than most_tokens tokens (a fifth of them empty), open
    segments before the step, pools after it (the first stream's count below its step's tokens: counts below 1
    divide by 1)."""
    rng = np.random.default_rng(seed)
    per = rng.integers(1, most_runs + 1, streams)
    lens = rng.integers(0, most_tokens, int(per.sum()))
    lens[rng.random(len(lens)) < 0.2] = 0
    run_cu = torch.tensor(np.concatenate([[0], np.cumsum(lens)]))
    run_first = torch.tensor(np.concatenate([[0], np.cumsum(per)[:-1]]))
    run_last = run_first + torch.tensor(per) - 1
    run_counts = torch.tensor(lens)
    run_counts[run_first] += torch.tensor(rng.integers(0, 9, streams))
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(int(run_cu[-1]), d, generator=g).to(dtype)
    open_sums = torch.randn(streams, d, generator=g, dtype=torch.float64)
    stream_tokens = torch.tensor([int(lens[f : f + k].sum()) for f, k in zip(run_first.tolist(), per)])
    pool_count = stream_tokens + torch.tensor(rng.integers(0, 900, streams))
    pool_count[0] = 0  # a pool below its step's tokens (as no engine keeps it): the means divide by 1
    pool_sum = torch.randn(streams, d, generator=g, dtype=torch.float64) * 30
    return hidden, run_cu, run_first, run_last, run_counts, open_sums, pool_sum, pool_count
