"""PyTorch reference for one recurrent retention step: S = g S + k^T v; o = scale * q S."""

from __future__ import annotations

import torch


def recurrent_retention_step_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    state: torch.Tensor,
    log_decay: torch.Tensor,
    *,
    scale: float | None = None,
    inplace: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """q, k [N, H, K]; v [N, H, V]; state [N, H, K, V] float32. Returns o [N, H, V] and the state."""
    acc = torch.float64 if q.dtype == torch.float64 else torch.float32
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    g = torch.exp(log_decay.to(device=q.device, dtype=acc))[None, :, None, None]
    qa, ka, va = q.to(acc), k.to(acc), v.to(acc)
    new = g * state.to(acc) + ka[..., :, None] * va[..., None, :]
    o = scale * torch.einsum("nhk,nhkv->nhv", qa, new)
    if inplace:
        state.copy_(new)
        new = state
    return o.to(q.dtype), new
