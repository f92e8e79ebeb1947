"""SwiGLU activation of the MLP: swish(gate) * up."""

from __future__ import annotations

import torch

from ..backend import check_backend
from .reference import swiglu_reference


def swiglu(
    gate: torch.Tensor, up: torch.Tensor, *, row_scale: torch.Tensor | None = None, backend: str | None = None
) -> torch.Tensor:
    """gate, up [T, F] (either may be a strided view, unit stride along F); row_scale None or [T], a
    per-token factor of both before the activation. Returns [T, F] in gate's dtype."""
    if gate.dim() != 2 or up.shape != gate.shape:
        raise ValueError(f"gate and up must both be [T, F], got {tuple(gate.shape)} and {tuple(up.shape)}")
    if row_scale is not None and tuple(row_scale.shape) != (gate.shape[0],):
        raise ValueError(f"row_scale must be [T]=[{gate.shape[0]}], got {tuple(row_scale.shape)}")
    if check_backend(backend, gate, up) == "triton":
        from .triton_swiglu import swiglu_triton

        return swiglu_triton(gate, up, row_scale)
    return swiglu_reference(gate, up, row_scale)
