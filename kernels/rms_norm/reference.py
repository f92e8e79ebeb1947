"""PyTorch reference for RMSNorm over the last dimension: y = x / sqrt(mean(x^2) + eps) * w, and
its per-row factor alone, inv_rms = 1 / sqrt(mean(x^2) + eps) (float32; float64 for float64 x).

Computes in float32 (float64 for float64 inputs) and rounds once to x's dtype.
"""

from __future__ import annotations

import torch


def inv_rms_reference(x: torch.Tensor, eps: float) -> torch.Tensor:
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    return torch.rsqrt(x.to(acc).pow(2).mean(-1) + eps)


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    y = x.to(acc) * inv_rms_reference(x, eps)[..., None]
    return (y * weight.to(acc)).to(x.dtype)
