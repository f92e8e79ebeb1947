"""Chunkwise retention forward over a packed, variable-length batch of streams."""

from __future__ import annotations

import torch

from ..backend import check_backend
from .reference import chunk_retention_reference


def chunk_retention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor,
    *,
    cu_seqlens: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    scale: float | None = None,
    chunk_size: int = 64,
    backend: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Retention over N packed sequences.

    q, k: [T, H, K]; v: [T, H, V] (bf16, fp16 or fp32); log_decay: [H] float32 (log g_h);
    cu_seqlens: [N+1] int offsets of each sequence in T (None: one sequence);
    initial_state: [N, H, K, V] float32 or None (zeros).
    Returns o [T, H, V] in q's dtype and the final states [N, H, K, V] float32.
    """
    _check_shapes(q, k, v, log_decay, cu_seqlens, initial_state)
    if check_backend(backend, q, k, v) == "triton":
        from .triton_fwd import chunk_retention_triton

        return chunk_retention_triton(
            q, k, v, log_decay, cu_seqlens=cu_seqlens, initial_state=initial_state, scale=scale
        )
    return chunk_retention_reference(
        q, k, v, log_decay, cu_seqlens=cu_seqlens, initial_state=initial_state, scale=scale,
        chunk_size=chunk_size,
    )


def _check_shapes(q, k, v, log_decay, cu_seqlens, initial_state) -> None:
    if q.dim() != 3 or k.shape != q.shape or v.dim() != 3 or v.shape[:2] != q.shape[:2]:
        raise ValueError(
            f"expected q, k [T, H, K] and v [T, H, V]; got q {tuple(q.shape)}, k {tuple(k.shape)}, "
            f"v {tuple(v.shape)}"
        )
    H = q.shape[1]
    if log_decay.shape != (H,):
        raise ValueError(f"log_decay must be [H]=[{H}], got {tuple(log_decay.shape)}")
    n_seq = 1 if cu_seqlens is None else cu_seqlens.numel() - 1
    if cu_seqlens is not None and (cu_seqlens.dim() != 1 or n_seq < 1):
        raise ValueError(f"cu_seqlens must be 1-D with N+1 >= 2 entries, got {tuple(cu_seqlens.shape)}")
    if initial_state is not None:
        want = (n_seq, H, q.shape[2], v.shape[2])
        if tuple(initial_state.shape) != want:
            raise ValueError(f"initial_state must be {want}, got {tuple(initial_state.shape)}")
