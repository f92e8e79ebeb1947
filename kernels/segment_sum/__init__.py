"""Per-sequence float64 sums of packed rows (the pooled stream embedding's running sum)."""

from __future__ import annotations

import torch

from ..backend import check_backend
from .reference import segment_sum_reference


def segment_sum(x: torch.Tensor, cu_seqlens: torch.Tensor, *, backend: str | None = None) -> torch.Tensor:
    """x [T, D]; cu_seqlens [N+1] rising from 0 to T. Returns [N, D] float64: each sequence's row sum."""
    if x.dim() != 2 or cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
        raise ValueError(f"expected x [T, D] and cu_seqlens [N+1]; got {tuple(x.shape)} and {tuple(cu_seqlens.shape)}")
    if check_backend(backend, x) == "triton":
        from .triton_segment_sum import segment_sum_triton

        return segment_sum_triton(x, cu_seqlens)
    return segment_sum_reference(x, cu_seqlens)
