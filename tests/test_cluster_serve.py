"""`streamret serve --ray` as a user runs it: a process that starts a private local Ray with CPU workers,
serves gRPC, answers `streamret cluster status`, and drains on SIGTERM (exit 0, states durable)."""

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("ray")

from streamret.client import Client  # noqa: E402
from streamret.engine import Engine  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.timeout(180)]

TEXT = "The river ran north. Boats carried grain to the city! Every spring the floods came back. " * 3


def test_serve_ray_starts_a_local_cluster_serves_and_drains(tmp_path):
    cmd = [sys.executable, "-m", "streamret.cli", "serve", "--ray", "--workers", "2", "--gpus-per-worker", "0",
           "--model", "random:tiny", "--dtype", "float32", "--state-dir", str(tmp_path / "states"), "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "RAY_ADDRESS": ""})
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()  # keeps the pipe drained
    try:
        deadline = time.monotonic() + 120
        while not any(line.startswith("streamret serving") for line in seen) and time.monotonic() < deadline:
            assert proc.poll() is None, "".join(seen)
            time.sleep(0.2)
        line = next((line for line in seen if line.startswith("streamret serving")), None)
        assert line, "".join(seen)
        port = int(line.split(" on ")[1].split(":")[1].split(",")[0])
        with Client(f"127.0.0.1:{port}") as client:
            chunks = [TEXT[i : i + 17] for i in range(0, len(TEXT), 17)]
            client.stream("doc", chunks)
            emb = client.embedding_array("doc")
            assert client.open("doc", create_if_missing=False).applied_seq == len(chunks) + 1
        with Engine.from_model("random:tiny", device="cpu", dtype="float32") as engine:
            engine.append("doc", 1, TEXT, flush=True)
            ref = engine.embedding("doc")
        assert np.linalg.norm(emb - ref) <= 1e-5 * np.linalg.norm(ref)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        reader.join(timeout=10)
        assert proc.returncode == 0, "".join(seen)
        assert any("stopped; every stream's applied chunks are durable" in line for line in seen), "".join(seen)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
