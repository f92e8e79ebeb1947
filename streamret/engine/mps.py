"""A CUDA MPS control daemon of the engine processes' own, so that they share one GPU context.

Without MPS, the engine processes of one GPU each hold a context of their own and the GPU time-slices between
them: on the H200 with 12 engine processes, alternated on one machine, a step waited 2.9-3.4 ms for the device
at 64 streams without MPS and 0.15 ms with it, and the engine read 5-9% more at 64 streams and 1-5% more at
1,024 (bench/RESULTS.md, session 23). The cost: the clients of one MPS server share a fatal GPU fault, so every
engine process stops at once (each is started again, as after any crash).

`ShardedEngine` starts one (`STREAMRET_MPS`, default auto: with more than one engine process on a GPU, where
`nvidia-cuda-mps-control` is on PATH and no MPS pipe folder is set already) in a private folder, points only
its engine processes at it, and stops it when they are gone. A user who runs MPS already
(CUDA_MPS_PIPE_DIRECTORY set) keeps theirs; STREAMRET_MPS=off turns this off, =on makes a failure to start it
an error.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile

log = logging.getLogger("streamret.engine")

CONTROL = "nvidia-cuda-mps-control"
MODES = ("auto", "on", "off")


def mps_mode() -> str:
    """STREAMRET_MPS: auto (the default), on or off; a bad value raises, naming it."""
    mode = os.environ.get("STREAMRET_MPS", "").strip().lower() or "auto"
    if mode not in MODES:
        raise ValueError(f"STREAMRET_MPS={os.environ['STREAMRET_MPS']!r}: use one of {', '.join(MODES)}")
    return mode


class MpsDaemon:
    """One private MPS control daemon: `env` points a process at it (set before that process's first CUDA call)."""

    def __init__(self, folder: str):
        self.folder = folder
        self.env = {"CUDA_MPS_PIPE_DIRECTORY": os.path.join(folder, "pipe"),
                    "CUDA_MPS_LOG_DIRECTORY": os.path.join(folder, "log")}

    @classmethod
    def start(cls, procs: int, cuda: bool) -> MpsDaemon | None:
        """A daemon for `procs` engine processes on a GPU (cuda), or None where none is wanted or none could be
        started (STREAMRET_MPS=on: then RuntimeError)."""
        mode = mps_mode()
        if mode == "off" or procs < 2 or not cuda or os.environ.get("CUDA_MPS_PIPE_DIRECTORY"):
            return None
        control = shutil.which(CONTROL)
        if control is None:
            if mode == "on":
                raise RuntimeError(f"STREAMRET_MPS=on but {CONTROL} is not on PATH: install the NVIDIA driver's "
                                   "utilities, or set STREAMRET_MPS=auto to run without MPS")
            return None
        daemon = cls(tempfile.mkdtemp(prefix="streamret-mps-"))
        for path in daemon.env.values():
            os.makedirs(path)
        try:
            subprocess.run([control, "-d"], env={**os.environ, **daemon.env}, check=True, timeout=30,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        except (OSError, subprocess.SubprocessError) as e:
            daemon.remove()
            detail = getattr(e, "output", None) or b""
            message = f"starting the CUDA MPS control daemon failed ({e}; {detail.decode(errors='replace').strip()})"
            if mode == "on":
                raise RuntimeError(message + ": set STREAMRET_MPS=auto or off to run without MPS") from e
            log.warning("%s; the engine processes time-slice the GPU instead", message)
            return None
        log.info("engine processes share the GPU through a CUDA MPS daemon of their own (%s)", daemon.folder)
        return daemon

    def stop(self) -> None:
        """Ask the daemon to quit (it stops its server once its clients are gone), then remove its folder."""
        control = shutil.which(CONTROL)
        if control is not None:
            try:
                subprocess.run([control], input=b"quit\n", env={**os.environ, **self.env}, timeout=30,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            except (OSError, subprocess.SubprocessError) as e:
                log.warning("stopping the CUDA MPS daemon in %s failed: %s", self.folder, e)
        self.remove()

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
