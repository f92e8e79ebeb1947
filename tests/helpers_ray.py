"""A small local Ray for the tests (CI has 2 cores), started again when it times out: on a loaded machine
Ray's GCS server or raylet can miss the time ray.init gives them."""

from __future__ import annotations

import ray


def start_local_ray(num_cpus: int, attempts: int = 3, **options) -> None:
    """options: more ray.init arguments (num_gpus=1 for the GPU tests)."""
    for attempt in range(1, attempts + 1):
        try:
            ray.init(num_cpus=num_cpus, object_store_memory=80 * 2**20, include_dashboard=False, log_to_driver=False,
                     **options)
            return
        # "Timed out waiting for file .../gcs_server_port_..." (RuntimeError), or "The current node timed out
        # during startup" (a plain Exception): both a slow start, worth another try
        except Exception as e:  # noqa: BLE001
            ray.shutdown()
            if attempt == attempts or "timed out" not in str(e).lower():
                raise
