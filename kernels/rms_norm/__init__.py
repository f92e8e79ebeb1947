"""RMSNorm over the last dimension, with its weight; or its per-row factor alone."""

from __future__ import annotations

import torch

from ..backend import check_backend
from .reference import inv_rms_reference, rms_norm_reference


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, *, backend: str | None = None) -> torch.Tensor:
    """x [..., D] (bf16, fp16, fp32; float64 on the torch backend); weight [D]. Returns x's shape and dtype."""
    if weight.shape != (x.shape[-1],):
        raise ValueError(f"weight must be [{x.shape[-1]}] for x {tuple(x.shape)}, got {tuple(weight.shape)}")
    if check_backend(backend, x, weight) == "triton":
        from .triton_norm import rms_norm_triton

        return rms_norm_triton(x, weight, eps)
    return rms_norm_reference(x, weight, eps)


def inv_rms(x: torch.Tensor, eps: float, *, backend: str | None = None) -> torch.Tensor:
    """RMSNorm's per-row factor 1 / sqrt(mean(x^2) + eps) of x [..., D]: float32 [...] (float64 for
    float64 x). rms_norm(x, w) equals (x * w) scaled by it row by row, so a norm feeding a linear
    layer folds its weight into the layer's and leaves only this factor to apply to the output."""
    if check_backend(backend, x) == "triton":
        from .triton_norm import inv_rms_triton

        return inv_rms_triton(x, eps)
    return inv_rms_reference(x, eps)
