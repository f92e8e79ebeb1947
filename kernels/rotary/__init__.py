"""Rotary position embedding of queries and keys (half-split layout)."""

from __future__ import annotations

import torch

from ..backend import check_backend
from .reference import rotary_reference


def apply_rotary(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *, inplace: bool = False,
    row_scale: torch.Tensor | None = None, squared_tail: int = 0, backend: str | None = None,
) -> torch.Tensor:
    """Rotate x [T, H, D] (D even; any strides with unit stride along D) by cos, sin [T, D/2], and
    multiply each token's rows by row_scale [T] when given, squared for the last squared_tail
    heads (the fused layer rotates q and k heads together: k takes a norm's factor for itself and
    for v).

    Returns a new tensor in x's dtype, or x itself rotated in place when inplace.
    """
    if x.dim() != 3 or x.shape[-1] % 2:
        raise ValueError(f"x must be [T, H, D] with D even, got {tuple(x.shape)}")
    want = (x.shape[0], x.shape[-1] // 2)
    if tuple(cos.shape) != want or tuple(sin.shape) != want:
        raise ValueError(f"cos and sin must be [T, D/2]={list(want)}, got {tuple(cos.shape)} and {tuple(sin.shape)}")
    if row_scale is not None and tuple(row_scale.shape) != (x.shape[0],):
        raise ValueError(f"row_scale must be [T]=[{x.shape[0]}], got {tuple(row_scale.shape)}")
    if not 0 <= squared_tail <= x.shape[1]:
        raise ValueError(f"squared_tail={squared_tail} must lie in [0, H={x.shape[1]}]")
    if check_backend(backend, x) == "triton" and x.stride(-1) == 1:
        from .triton_rotary import rotary_triton

        out = x if inplace else torch.empty_like(x, memory_format=torch.contiguous_format)
        return rotary_triton(x, cos, sin, out, row_scale, squared_tail)
    y = rotary_reference(x, cos, sin, row_scale, squared_tail)
    return x.copy_(y) if inplace else y
