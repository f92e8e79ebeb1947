"""PyTorch reference for rotary embedding, half-split (non-interleaved) layout as in fla:

    x = [x1, x2] (halves of the head dim D)  ->  [x1 c - x2 s, x2 c + x1 s] * r

with c, s = cos, sin of each token's angles [T, D/2] and r an optional per-token scale [T] (1 when
absent), squared for the last `squared_tail` heads. Computes in float32 (float64 for float64
inputs) and rounds once to x's dtype.
"""

from __future__ import annotations

import torch


def rotary_reference(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, row_scale: torch.Tensor | None = None,
    squared_tail: int = 0,
) -> torch.Tensor:
    """x [T, H, D]; cos, sin [T, D/2]; row_scale None or [T]. Returns a new [T, H, D] tensor in x's dtype."""
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    x1, x2 = x.to(acc).chunk(2, dim=-1)
    c, s = cos.to(acc)[:, None, :], sin.to(acc)[:, None, :]
    y = torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)
    if row_scale is not None:
        r = row_scale.to(acc)[:, None].expand(-1, x.shape[1]).clone()
        r[:, x.shape[1] - squared_tail :] **= 2
        y = y * r[:, :, None]
    return y.to(x.dtype)
