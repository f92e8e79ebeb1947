"""Retention's output gate: per-head RMSNorm of the retention output times swish of the gate."""

from __future__ import annotations

import torch

from ..backend import check_backend
from .reference import gated_rms_norm_reference


def gated_rms_norm(
    o: torch.Tensor, g: torch.Tensor, weight: torch.Tensor, eps: float, *, g_scale: torch.Tensor | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """o, g [T, H, V] (g may be a strided view); weight [V]; g_scale None or [T], a per-token
    factor of the gate before its swish. Returns [T, H, V] in o's dtype."""
    if o.dim() != 3 or g.shape != o.shape or weight.shape != (o.shape[-1],):
        raise ValueError(
            f"expected o, g [T, H, V] and weight [V]; got o {tuple(o.shape)}, g {tuple(g.shape)}, "
            f"weight {tuple(weight.shape)}"
        )
    if g_scale is not None and tuple(g_scale.shape) != (o.shape[0],):
        raise ValueError(f"g_scale must be [T]=[{o.shape[0]}], got {tuple(g_scale.shape)}")
    if check_backend(backend, o, g, weight) == "triton":
        from .triton_gated_norm import gated_rms_norm_triton

        return gated_rms_norm_triton(o, g, weight, eps, g_scale)
    return gated_rms_norm_reference(o, g, weight, eps, g_scale)
