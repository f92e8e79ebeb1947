"""PyTorch reference for per-sequence sums of packed rows: out[n] = sum of x[cu[n]:cu[n+1]], in
float64 (the stream embedding is a mean over every token a stream has seen, so its running sum is
kept in float64)."""

from __future__ import annotations

import torch


def segment_sum_reference(x: torch.Tensor, cu_seqlens: torch.Tensor) -> torch.Tensor:
    cu = cu_seqlens.to(device=x.device, dtype=torch.long)
    n = cu.numel() - 1
    seq_of_row = torch.repeat_interleave(torch.arange(n, device=x.device), cu[1:] - cu[:-1], output_size=x.shape[0])
    return x.new_zeros(n, x.shape[-1], dtype=torch.float64).index_add_(0, seq_of_row, x.to(torch.float64))
