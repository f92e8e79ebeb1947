"""Backend choice and the decay convention shared by every retention op."""

from __future__ import annotations

import os

import torch

from .utils import KERNEL_DTYPES

BACKENDS = ("torch", "triton")


def retention_log_decays(num_heads: int, decays: list[float] | tuple[float, ...] | None = None) -> torch.Tensor:
    """Natural log of each head's decay, float32 [H].

    The default is RetNet's g_h = 1 - 2^(-5-h). Decays are passed to kernels in log space so that
    powers g^n are computed as exp(n * log g) and never as a ratio of two underflowed numbers.
    """
    if decays is None:
        h = torch.arange(num_heads, dtype=torch.float64, device="cpu")  # cpu even under a meta-device build
        g = 1.0 - torch.pow(2.0, -5.0 - h)
    else:
        if len(decays) != num_heads:
            raise ValueError(f"got {len(decays)} decays for {num_heads} heads; pass one per head")
        g = torch.tensor(decays, dtype=torch.float64, device="cpu")
        if not bool(((g > 0) & (g <= 1)).all()):
            raise ValueError(f"decays must lie in (0, 1], got {list(decays)}")
    return torch.log(g).to(torch.float32)


def default_backend(t: torch.Tensor) -> str:
    """`triton` for CUDA tensors of a dtype the kernels take, `torch` otherwise; STREAMRET_KERNEL_BACKEND overrides."""
    forced = os.environ.get("STREAMRET_KERNEL_BACKEND")
    if forced:
        if forced not in BACKENDS:
            raise ValueError(f"STREAMRET_KERNEL_BACKEND={forced!r}; use one of {BACKENDS}")
        return forced
    return "triton" if t.is_cuda and t.dtype in KERNEL_DTYPES else "torch"  # float64 runs the reference


def check_backend(backend: str | None, t: torch.Tensor, *others: torch.Tensor | None) -> str:
    """The backend an op runs on. The Triton kernels have no backward: where autograd would need
    one (grad enabled and an input that requires grad), the default is `torch`, and asking for
    `triton` is an error rather than gradients silently lost."""
    needs_grad = torch.is_grad_enabled() and any(x is not None and x.requires_grad for x in (t, *others))
    if backend is None and needs_grad:
        return "torch"
    backend = backend or default_backend(t)
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}; use one of {BACKENDS}")
    if backend == "triton" and needs_grad:
        raise ValueError("the triton kernels have no backward: run under torch.no_grad(), or use backend='torch'")
    if backend == "triton" and not t.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError("the triton backend needs CUDA tensors (or TRITON_INTERPRET=1 on the CPU)")
    return backend
