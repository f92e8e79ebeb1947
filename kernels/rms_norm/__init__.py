"""RMSNorm over the last dimension, with its weight."""

from __future__ import annotations

import torch

from ..backend import check_backend
from .reference import rms_norm_reference


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, *, backend: str | None = None) -> torch.Tensor:
    """x [..., D] (bf16, fp16, fp32; float64 on the torch backend); weight [D]. Returns x's shape and dtype."""
    if weight.shape != (x.shape[-1],):
        raise ValueError(f"weight must be [{x.shape[-1]}] for x {tuple(x.shape)}, got {tuple(weight.shape)}")
    if check_backend(backend, x, weight) == "triton":
        from .triton_norm import rms_norm_triton

        return rms_norm_triton(x, weight, eps)
    return rms_norm_reference(x, weight, eps)
