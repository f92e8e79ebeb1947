"""Retention kernels and the fused layer ops of streamret (importable as ``streamret_kernels``).

Each op lives in its own folder: a PyTorch reference that is obviously correct, a Triton kernel
that must match it, and one thin public function that picks between them.
"""

from .backend import default_backend, retention_log_decays
from .chunk_retention import chunk_retention, chunk_retention_reference
from .gated_norm import gated_rms_norm
from .pool_runs import pool_runs
from .recurrent_step import recurrent_retention_step, recurrent_retention_step_reference
from .rms_norm import inv_rms, rms_norm
from .rotary import apply_rotary
from .segment_sum import segment_sum
from .swiglu import swiglu

__all__ = [
    "apply_rotary",
    "chunk_retention",
    "chunk_retention_reference",
    "default_backend",
    "gated_rms_norm",
    "inv_rms",
    "pool_runs",
    "recurrent_retention_step",
    "recurrent_retention_step_reference",
    "retention_log_decays",
    "rms_norm",
    "segment_sum",
    "swiglu",
]
