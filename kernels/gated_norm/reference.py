"""PyTorch reference for the retention output gate: a per-head RMSNorm of o with its weight,
times swish of the gate:

    out = o / sqrt(mean_V(o^2) + eps) * w * swish(r * g)

with r an optional per-token scale of the gate [T] (1 when absent). Computes in float32 (float64
for float64 inputs) and rounds once to o's dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gated_rms_norm_reference(
    o: torch.Tensor, g: torch.Tensor, weight: torch.Tensor, eps: float, g_scale: torch.Tensor | None = None
) -> torch.Tensor:
    acc = torch.float64 if o.dtype == torch.float64 else torch.float32
    of = o.to(acc)
    y = of * torch.rsqrt(of.pow(2).mean(-1, keepdim=True) + eps) * weight.to(acc)
    gf = g.to(acc) if g_scale is None else g.to(acc) * g_scale.to(acc)[:, None, None]
    return (y * F.silu(gf)).to(o.dtype)
