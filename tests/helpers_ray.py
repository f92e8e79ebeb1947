"""A small local Ray for the tests (CI has 2 cores), started with one retry: on a loaded machine Ray's
GCS server can miss the time ray.init gives it to write its port file."""

from __future__ import annotations

import ray


def start_local_ray(num_cpus: int, attempts: int = 3) -> None:
    for attempt in range(1, attempts + 1):
        try:
            ray.init(num_cpus=num_cpus, object_store_memory=80 * 2**20, include_dashboard=False, log_to_driver=False)
            return
        except RuntimeError as e:  # "Timed out waiting for file .../gcs_server_port_..."
            ray.shutdown()
            if attempt == attempts or "Timed out" not in str(e):
                raise
