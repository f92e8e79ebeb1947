"""Triton gated RMSNorm (the math is in reference.py beside this file): one pass over o and g,
one write; g may be a strided view (columns of the fused projection output)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..utils import check_inputs, next_pow2


@triton.jit
def _gated_norm_kernel(
    o, g, w, y, g_scale, n_rows, stride_gt, stride_gh, stride_s, eps, H: tl.constexpr, V: tl.constexpr,
    BV: tl.constexpr, BR: tl.constexpr, HAS_SCALE: tl.constexpr,
):
    rows = tl.program_id(0) * BR + tl.arange(0, BR)  # row = token * H + head; o and y are [rows, V]
    cols = tl.arange(0, BV)
    mc = cols < V
    m = (rows < n_rows)[:, None] & mc[None, :]
    r64 = rows.to(tl.int64)
    ov = tl.load(o + r64[:, None] * V + cols[None, :], mask=m, other=0.0).to(tl.float32)
    g_off = (r64 // H) * stride_gt + (rows % H) * stride_gh
    gv = tl.load(g + g_off[:, None] + cols[None, :], mask=m, other=0.0).to(tl.float32)
    if HAS_SCALE:
        gv = gv * tl.load(g_scale + (r64 // H) * stride_s, mask=rows < n_rows, other=0.0)[:, None]
    wv = tl.load(w + cols, mask=mc, other=0.0).to(tl.float32)
    r = 1.0 / tl.sqrt(tl.sum(ov * ov, axis=1) / V + eps)
    out = ov * r[:, None] * wv[None, :] * (gv / (1.0 + tl.exp(-gv)))
    tl.store(y + r64[:, None] * V + cols[None, :], out.to(y.dtype.element_ty), mask=m)


def gated_rms_norm_triton(
    o: torch.Tensor, g: torch.Tensor, weight: torch.Tensor, eps: float, g_scale: torch.Tensor | None = None,
    *, rows_per_program: int | None = None, num_warps: int | None = None,
) -> torch.Tensor:
    """g_scale: None or [T] float32 (any stride). rows_per_program (a power of two) and num_warps:
    the tiling (None: about 4096 elements a program on 4 warps; 2 rows on 2 warps from V 512 up)."""
    check_inputs(o, g=g)
    T, H, V = o.shape
    o = o.contiguous()
    if g.stride(-1) != 1:
        g = g.contiguous()
    if g_scale is not None:
        g_scale = g_scale.to(device=o.device, dtype=torch.float32)
    y = torch.empty_like(o)
    if T * H:
        BV = next_pow2(V)
        if BV >= 512 and rows_per_program is None and num_warps is None:  # H200 sweep, V512: 191 us against
            rows_per_program, num_warps = 2, 2  # 199 at 8 rows on 4 warps (bench/issue13.py, 2026-12-02)
        BR = rows_per_program or max(1, 4096 // BV)
        _gated_norm_kernel[(triton.cdiv(T * H, BR),)](
            o, g, weight.contiguous(), y, o if g_scale is None else g_scale, T * H, g.stride(0), g.stride(1),
            0 if g_scale is None else g_scale.stride(0), float(eps), H=H, V=V, BV=BV, BR=BR,
            HAS_SCALE=g_scale is not None, num_warps=num_warps or 4,
        )
    return y
