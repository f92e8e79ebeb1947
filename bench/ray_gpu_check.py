"""Ray on this machine's GPU before the cluster runs (bench/gpu_ray.sh): Ray finds the GPU by itself (as
`streamret serve --ray` starts it), a task given one GPU sees it as cuda:0 through CUDA_VISIBLE_DEVICES,
and Ray Data imports (it needs pandas). Exit code 1 with the reason when one of them fails (an
ImportError for Ray Data)."""

from __future__ import annotations

import os
import sys
import time

import ray
import ray.data  # noqa: F401  (needs pandas; imported here so a missing one fails first, with its name)
import torch


@ray.remote(num_gpus=1)
def on_a_gpu() -> dict:
    x = torch.randn(2048, 2048, device="cuda")
    return {"gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "device_count": torch.cuda.device_count(), "name": torch.cuda.get_device_name(0),
            "matmul_ok": bool(torch.isfinite((x @ x).sum()).item())}


def main() -> int:
    t0 = time.monotonic()
    ray.init(include_dashboard=False, log_to_driver=False)
    try:
        resources = ray.cluster_resources()
        print(f"ray {ray.__version__} up in {time.monotonic() - t0:.1f} s: {resources.get('CPU', 0):g} CPU, "
              f"{resources.get('GPU', 0):g} GPU; torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
        if resources.get("GPU", 0) < 1:
            print("FAIL: Ray found no GPU on its own (serve --ray --gpus-per-worker 1 would wait for one)")
            return 1
        seen = ray.get(on_a_gpu.remote(), timeout=120)
        print(f"task with num_gpus=1: {seen}", flush=True)
        if seen["CUDA_VISIBLE_DEVICES"] != ",".join(seen["gpu_ids"]) or seen["device_count"] != 1:
            print("FAIL: the task does not see exactly its assigned GPU")
            return 1
        return 0
    finally:
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
