"""One recurrent retention step for N streams (decode, and chunks of a single token)."""

from __future__ import annotations

import torch

from ..backend import check_backend
from .reference import recurrent_retention_step_reference


def recurrent_retention_step(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    state: torch.Tensor,
    log_decay: torch.Tensor,
    *,
    scale: float | None = None,
    inplace: bool = False,
    backend: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """q, k [N, H, K]; v [N, H, V]; state [N, H, K, V] float32; log_decay [H].

    Returns o [N, H, V] in q's dtype and the new state (the same tensor, updated, when inplace).
    """
    N, H, K = q.shape
    if k.shape != q.shape or v.shape[:2] != (N, H) or tuple(state.shape) != (N, H, K, v.shape[-1]):
        raise ValueError(
            f"expected q, k [N, H, K], v [N, H, V], state [N, H, K, V]; got q {tuple(q.shape)}, "
            f"k {tuple(k.shape)}, v {tuple(v.shape)}, state {tuple(state.shape)}"
        )
    if state.dtype != torch.float32 and state.dtype != torch.float64:
        raise ValueError(f"state must be float32, got {state.dtype}")
    if check_backend(backend, q, k, v) == "triton":
        from .triton_step import recurrent_retention_step_triton

        return recurrent_retention_step_triton(q, k, v, state, log_decay, scale=scale, inplace=inplace)
    return recurrent_retention_step_reference(q, k, v, state, log_decay, scale=scale, inplace=inplace)
