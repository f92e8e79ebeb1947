"""PyTorch reference for the SwiGLU activation: swish(gate) * up, computed in float32 (float64 for
float64 inputs), rounded once to gate's dtype."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def swiglu_reference(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    acc = torch.float64 if gate.dtype == torch.float64 else torch.float32
    return (F.silu(gate.to(acc)) * up.to(acc)).to(gate.dtype)
