"""`streamret cluster stop` as a user runs it (issue 17, item 4): the gateway (`serve --ray`, a private local
Ray with one CPU worker) drains and exits on its own within seconds, logging the stop once; a client gets a
prompt one-line error instead of waiting; the stop's last line says what is durable, and where."""

import os
import re
import secrets
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("ray")

from streamret.client import Client  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]

TOKEN = secrets.token_hex(32)
TEXT = "The river ran north. Boats carried grain to the city! Every spring the floods came back. " * 3


def ray_env() -> dict:
    """For the serve process's private Ray and the commands that join it: a small object store (about
    100 MB), and a Ray auth token of this test's own (shared by these processes, not ~/.ray's)."""
    proportion = 100e6 / (os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    return {**os.environ, "RAY_ADDRESS": "", "RAY_DEFAULT_OBJECT_STORE_MEMORY_PROPORTION": f"{proportion:.6f}",
            "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN}


def wait_for(seen: list[str], proc, pattern: str, timeout_s: float) -> re.Match:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in list(seen):
            m = re.search(pattern, line)
            if m:
                return m
        assert proc.poll() is None, "".join(seen)
        time.sleep(0.2)
    raise AssertionError(f"no line matching {pattern!r} within {timeout_s} s:\n" + "".join(seen))


def test_cluster_stop_stops_the_gateway_and_says_what_is_durable(tmp_path):
    states = tmp_path / "states"
    cmd = [sys.executable, "-m", "streamret.cli", "serve", "--ray", "--workers", "1", "--gpus-per-worker", "0",
           "--model", "random:tiny", "--dtype", "float32", "--state-dir", str(states), "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ray_env())
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        address = wait_for(seen, proc, r"started a local Ray at (\S+)", 120).group(1)
        port = int(wait_for(seen, proc, r"^streamret serving .* on [^:]+:(\d+)", 120).group(1))
        with Client(f"127.0.0.1:{port}") as client:
            client.stream("doc", [TEXT[i : i + 17] for i in range(0, len(TEXT), 17)])
        before = len(seen)

        stop = subprocess.run([sys.executable, "-m", "streamret.cli", "cluster", "stop", "--address", address],
                              capture_output=True, text=True, timeout=120, env=ray_env())
        assert stop.returncode == 0, stop.stdout + stop.stderr
        last = stop.stdout.strip().splitlines()[-1]
        assert last.startswith("stopped: 1 of 1 worker(s) drained; every stream's applied chunks are durable "
                               "(1 stream(s)"), last
        assert f"in {states}" in last and "its 1 gateway(s) stopped" in last, last

        proc.wait(timeout=30)  # the gateway exits on its own: no Ctrl-C needed
        reader.join(timeout=10)
        after = "".join(seen[before:])
        assert proc.returncode == 0, "".join(seen)
        assert after.count("the cluster was stopped (`streamret cluster stop`); this gateway stops too") == 1, after
        assert "retrying" not in after and "internal error" not in after and "Traceback" not in after, after
        assert "stopped; every stream's applied chunks are durable" in after, after

        # a client of the stopped gateway learns it at once, in one line, with exit code 2
        t = time.monotonic()
        client = subprocess.run([sys.executable, "-m", "streamret.cli", "stream", "-", "--server",
                                 f"127.0.0.1:{port}"],
                                input="more text", capture_output=True, text=True, timeout=60)
        assert time.monotonic() - t < 20
        assert client.returncode == 2 and len(client.stderr.strip().splitlines()) == 1, client.stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
