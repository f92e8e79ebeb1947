"""Defaults shared by `streamret serve --ray` and `streamret embed --ray` (light: imported for --help)."""

from __future__ import annotations

GPUS_PER_WORKER_HELP = ("GPUs per worker (default: 1 on a GPU cluster or with --device cuda, else 0); a fraction "
                        "shares a GPU, 0 makes CPU workers")


def default_gpus_per_worker(device: str, cluster_gpus: float) -> float:
    """GPUs per worker when none is given: 1 when --device asks for CUDA or, with --device auto, when the
    cluster has GPUs; else 0 (CPU workers)."""
    return 1.0 if device.startswith("cuda") or (device == "auto" and cluster_gpus > 0) else 0.0
