"""PyTorch reference for chunkwise retention: one sequence and one chunk at a time.

For a chunk of L tokens (positions i, j inside it) and the state S carried from earlier chunks:

    o_i   = scale * ( q_i . (g^(i+1) S)  +  sum_{j<=i} g^(i-j) (q_i . k_j) v_j )
    S_new = g^L S + sum_j g^(L-1-j) k_j^T v_j

Decay powers are exp(n * log g), computed inside the chunk. Accumulates in float32 (float64 when
the inputs are float64, which is how the tests build their exact reference).
"""

from __future__ import annotations

import torch


def _seq_bounds(cu_seqlens: torch.Tensor | None, total: int) -> list[int]:
    if cu_seqlens is None:
        return [0, total]
    return [int(x) for x in cu_seqlens.tolist()]


def chunk_retention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor,
    *,
    cu_seqlens: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    scale: float | None = None,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """q, k [T, H, K]; v [T, H, V]; log_decay [H]; returns o [T, H, V] and states [N, H, K, V]."""
    T, H, K = q.shape
    V = v.shape[-1]
    acc = torch.float64 if q.dtype == torch.float64 else torch.float32
    scale = K**-0.5 if scale is None else scale
    bounds = _seq_bounds(cu_seqlens, T)
    n_seq = len(bounds) - 1
    if initial_state is None:
        states = q.new_zeros(n_seq, H, K, V, dtype=acc)
    else:
        states = initial_state.to(acc).clone()
    lg = log_decay.to(device=q.device, dtype=acc)
    o = q.new_empty(T, H, V, dtype=acc)
    for n in range(n_seq):
        S = states[n]
        for start in range(bounds[n], bounds[n + 1], chunk_size):
            end = min(start + chunk_size, bounds[n + 1])
            L = end - start
            qc, kc, vc = (x[start:end].to(acc).transpose(0, 1) for x in (q, k, v))  # [H, L, *]
            i = torch.arange(L, device=q.device, dtype=acc)
            q_decay = torch.exp(lg[:, None] * (i + 1))  # g^(i+1)
            k_decay = torch.exp(lg[:, None] * (L - 1 - i))  # g^(L-1-j)
            diff = i[:, None] - i[None, :]
            mask = torch.exp(lg[:, None, None] * diff.clamp(min=0)) * (diff >= 0)  # g^(i-j), j<=i
            intra = ((qc @ kc.transpose(-1, -2)) * mask) @ vc
            inter = (qc * q_decay[..., None]) @ S
            o[start:end] = (scale * (intra + inter)).transpose(0, 1)
            S = torch.exp(lg * L)[:, None, None] * S + (kc * k_decay[..., None]).transpose(-1, -2) @ vc
        states[n] = S
    return o.to(q.dtype), states
