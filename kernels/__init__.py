"""Retention kernels for streamret (importable as ``streamret_kernels``).

Each op lives in its own folder: a PyTorch reference that is obviously correct, a Triton kernel
that must match it, and one thin public function that picks between them.
"""

from .backend import default_backend, retention_log_decays
from .chunk_retention import chunk_retention, chunk_retention_reference
from .recurrent_step import recurrent_retention_step, recurrent_retention_step_reference

__all__ = [
    "chunk_retention",
    "chunk_retention_reference",
    "default_backend",
    "recurrent_retention_step",
    "recurrent_retention_step_reference",
    "retention_log_decays",
]
