"""PyTorch reference for the SwiGLU activation: swish(r * gate) * (r * up), with r an optional
per-token scale [T] (1 when absent), computed in float32 (float64 for float64 inputs), rounded once
to gate's dtype."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def swiglu_reference(gate: torch.Tensor, up: torch.Tensor, row_scale: torch.Tensor | None = None) -> torch.Tensor:
    acc = torch.float64 if gate.dtype == torch.float64 else torch.float32
    a, b = gate.to(acc), up.to(acc)
    if row_scale is not None:
        r = row_scale.to(acc)[:, None]
        a, b = a * r, b * r
    return (F.silu(a) * b).to(gate.dtype)
