"""`streamret serve` as a child process, for the tests (and bench/chaos.py) that kill it, restart it on the
same state folder and port, watch its memory, or check what it wrote.

    with ServeProcess(tmp_path / "states", cwd=tmp_path) as server:
        port = server.start()
        ...
        server.kill9()
        server.start()  # same port, same state folder
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path

MiB = 1024 * 1024


class ServeProcess:
    """One `streamret serve --model random:tiny --device cpu` child process at a time on a fixed state
    folder; the port picked by the first start is kept by every restart."""

    def __init__(self, state_dir: str | Path, *args: str, cwd: str | Path | None = None, model: str = "random:tiny",
                 start_timeout_s: float = 120.0):
        self.state_dir = Path(state_dir)
        self.args = list(args)
        self.cwd = Path(cwd) if cwd is not None else self.state_dir.parent
        self.model = model
        self.start_timeout_s = start_timeout_s
        self.port = 0
        self.metrics_port: int | None = None  # when started with --metrics-port
        self.http_port: int | None = None  # when started with --http-port (or STREAMRET_HTTP_PORT)
        self.proc: subprocess.Popen | None = None
        self.line = ""  # what it printed once it served
        self.starts = 0
        self.kills = 0
        self._log: deque[str] = deque(maxlen=200)  # the child's last stderr lines, for failure messages

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> int:
        """Start the server (on the port of the previous start, if any); return the port once it serves."""
        if self.alive():
            raise RuntimeError(f"the server (pid {self.proc.pid}) is still running; kill or stop it first")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
        cmd = [sys.executable, "-m", "streamret.cli", "serve", "--model", self.model, "--device", "cpu",
               "--dtype", "float32", "--port", str(self.port), "--state-dir", str(self.state_dir),
               "--log-level", "WARNING", *self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=self.cwd,
                                     env=env)
        threading.Thread(target=self._keep_log, args=(self.proc,), daemon=True).start()
        line = _readline(self.proc, self.start_timeout_s)
        if "serving" not in line:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"`streamret serve` did not start: {line!r}\n{self.log()}")
        self.port = int(line.split(" on ")[1].split(":")[1].split(",")[0])
        if ", metrics on http://" in line:  # ", metrics on http://HOST:PORT/metrics"
            self.metrics_port = int(line.split(", metrics on http://")[1].split("/metrics")[0].rsplit(":", 1)[1])
        if ", HTTP on " in line:
            self.http_port = int(line.split(", HTTP on ")[1].rsplit(":", 1)[1].split(",")[0])
        self.line = line  # (with --front-procs: ", front process pids PID ...")
        self.starts += 1
        return self.port

    def _keep_log(self, proc: subprocess.Popen) -> None:
        for line in proc.stderr:
            self._log.append(line)

    def log(self) -> str:
        return "".join(self._log)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL: no drain, no checkpoint, no flush of anything in memory."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.kills += 1

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM (a graceful drain) and wait; return the exit code (None when it was not running)."""
        if not self.alive():
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def metric(self, name: str, labels: str = "") -> float:
        """One sample of the server's Prometheus /metrics, e.g. metric("streamret_engine_streams", 'tier="host"')."""
        import urllib.request

        key = f"{name}{{{labels}}}" if labels else name
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).read().decode()
        for line in text.splitlines():
            if line.startswith(key + " "):
                return float(line.split()[-1])
        raise KeyError(f"no sample {key} in /metrics")

    def rss_bytes(self) -> int:
        """Resident memory of the running server, from /proc."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS line in /proc/<pid>/status")

    def reset_peak_rss(self) -> None:
        """Start peak_rss_bytes() again from the current RSS (Linux: "5" to /proc/<pid>/clear_refs)."""
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")

    def peak_rss_bytes(self) -> int:
        """Peak resident memory of the running server since it started or reset_peak_rss() (VmHWM)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM line in /proc/<pid>/status")

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait()


def _readline(proc: subprocess.Popen, timeout_s: float) -> str:
    """The child's first stdout line, or '' when it does not come within timeout_s."""
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    return out[0] if out else ""


def files_under(root: str | Path) -> set[str]:
    """Every file below root, as paths relative to it."""
    root = Path(root)
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
