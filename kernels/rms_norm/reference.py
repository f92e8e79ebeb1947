"""PyTorch reference for RMSNorm over the last dimension: y = x / sqrt(mean(x^2) + eps) * w.

Computes in float32 (float64 for float64 inputs) and rounds once to x's dtype.
"""

from __future__ import annotations

import torch


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    xf = x.to(acc)
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (y * weight.to(acc)).to(x.dtype)
