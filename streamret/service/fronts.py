"""Several gRPC front processes on one port, over the same engine processes (`streamret serve --front-procs F`).

With engine processes the server process itself (gRPC's event loop, the service's Python, ShardedEngine's
parent half) is one Python process under one GIL, and on a GPU host it is the bound of the service before the
engines are (issue 14). With F fronts the first process, front 0, owns the engine processes as without
fronts (starts them with `listen=True`, starts one again at the same address when it exits, shuts them down)
and starts F-1 front processes. Each is a whole gRPC server (the same ServerConfig: auth, TLS, limits) bound to
front 0's port: gRPC sets SO_REUSEPORT on Linux by default, so the kernel spreads new connections over the
fronts; a connection and its calls stay on one front. Each front connects to every engine process itself
(engine/attach.py): a stream's calls go to its engine process whichever front takes them, and the engine's seq
checks order them (an Append call of a stream on each of two fronts is as two calls on one front: a chunk
already applied is acked as duplicate, one past a gap fails with its SeqGap).

What is per front: the per-tenant limits (calls, streams held, batch tables, imports: a tenant may use each
up to its limit on every front), the queue bounds, the registry of streams held (labels set by OpenStream are
answered by the front that set them; idle eviction evicts what was idle on that front, and a stream in use on
another front is read back from its record on its next chunk; a stream closed through another front stays
in this front's registry until evicted here). /metrics and HTTP are front 0's alone (gRPC health is every
front's): /metrics has the engine-wide figures (every engine process's stats) and front 0's own gRPC counters
only. A front's drain checkpoints nothing (AttachedEngine.checkpoint_all): front 0 checkpoints the engines
after every front drained, and the engine processes refuse the engine-wide calls from a front's connection.

Lifecycle: SIGTERM (or Ctrl-C) to front 0 drains every front at once (each stops taking calls and finishes its
running ones, within --drain-timeout-s), then the engines are checkpointed and shut down. A front that exits
while serving is started again (its clients' calls on it fail with UNAVAILABLE and reconnect, landing on
another front meanwhile); one that fails to start three times in a row is given up with an error in the log,
and the server goes on with the others. A front whose front 0 is gone drains and exits.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass

from ..engine.config import EngineConfig
from ..engine.shards import EngineLink, ShardedEngine, process_count

log = logging.getLogger("streamret.service")

_RESTART_PAUSES_S = (0.0, 5.0, 30.0)  # before each try to start a front again; then it is given up
_STOP_MARGIN_S = 15.0  # past the drain timeout, what a front gets to exit before it is killed


def front_procs(value: int | str) -> int:
    """A front-process count: an int >= 1."""
    return process_count(value, f"--front-procs must be an int >= 1 (gRPC server processes on the port), got "
                                f"{value!r}")


@dataclass(frozen=True)
class FrontSpec:
    """What a front process needs to serve (pickled into it)."""

    link: EngineLink
    engine_config: EngineConfig
    config: object  # ServerConfig, its port front 0's, without metrics and HTTP
    log_level: str | None  # None: leave logging as the process has it
    log_format: str = "text"
    switch_interval: float | None = None  # sys.setswitchinterval (bench/e2e.py's --switch-interval)


class FrontProcesses:
    """Front 0's view of the other F-1 front processes: starts them once its own server is bound, starts again
    one that exits, drains and stops them (the module docstring)."""

    def __init__(self, engine: ShardedEngine, config, count: int, log_level: str | None = "INFO",
                 log_format: str = "text", start_timeout_s: float = 120.0,
                 switch_interval: float | None = None) -> None:
        if engine.link is None:
            raise ValueError("front processes need engine processes that take connections: "
                             "ShardedEngine(..., listen=True)")
        self.count = front_procs(count)
        self._engine, self._config = engine, config
        self._logging = (log_level, log_format, switch_interval)
        self._start_timeout_s = start_timeout_s
        self._ctx = mp.get_context("spawn")
        self._lock = threading.Lock()
        self._procs: dict[int, tuple[mp.process.BaseProcess, object]] = {}  # rank -> (process, front 0's pipe end)
        self._stopping = False
        self._starting = 0  # fronts being launched: stop() waits for them (one that comes up late is drained)
        self._started = threading.Condition(self._lock)
        self._spec: FrontSpec | None = None

    @property
    def pids(self) -> list[int]:
        """The running front processes' ids (front 0's not among them), by rank."""
        with self._lock:
            return [p.pid for _, (p, _) in sorted(self._procs.items())]

    def start(self, port: int) -> None:
        """Start the other fronts on `port` (front 0's, bound), each ready to serve when this returns."""
        level, fmt, switch = self._logging
        config = dataclasses.replace(self._config, port=port, metrics_port=None, http_port=None)
        self._spec = FrontSpec(self._engine.link, self._engine.config, config, level, fmt, switch)
        try:
            for rank in range(1, self.count):
                self._launch(rank)
        except BaseException:
            self.stop(0.0)
            raise

    def _launch(self, rank: int) -> bool:
        """Start front `rank`; False when stop() ran meanwhile (the front was drained at once)."""
        with self._lock:
            self._starting += 1
        try:
            return self._launch_counted(rank)
        finally:
            with self._lock:
                self._starting -= 1
                self._started.notify_all()

    def _launch_counted(self, rank: int) -> bool:
        ours, theirs = self._ctx.Pipe()
        process = self._ctx.Process(target=_front_main, args=(rank, self._spec, theirs), name=f"streamret-front-{rank}",
                                    daemon=True)
        process.start()
        theirs.close()
        try:
            if not ours.poll(self._start_timeout_s):
                raise TimeoutError(f"front process {rank} did not start serving within {self._start_timeout_s} s")
            ours.recv()  # ("ready", pid); EOFError: it exited (its log says why)
        except BaseException as e:
            process.kill()
            process.join(timeout=10)
            ours.close()
            if isinstance(e, EOFError):
                raise RuntimeError(f"front process {rank} exited (code {process.exitcode}) before it served; see "
                                   "its log above") from None
            raise
        with self._lock:
            late = self._stopping  # stop() ran while it started (a restart): it was not among those drained
            if not late:
                self._procs[rank] = (process, ours)
        if late:
            self._drain_and_join([(process, ours)], self._start_timeout_s)
            return False
        threading.Thread(target=self._watch, args=(rank, process), name=f"streamret-front-{rank}-watch",
                         daemon=True).start()
        return True

    def _watch(self, rank: int, process: mp.process.BaseProcess) -> None:
        """Start a front again when it exits while serving."""
        process.join()
        with self._lock:
            if self._stopping:
                return
            self._procs.pop(rank, None)
        log.error("front process %d (pid %d) exited with code %s; starting it again", rank, process.pid,
                  process.exitcode)
        for attempt, pause in enumerate(_RESTART_PAUSES_S, start=1):
            time.sleep(pause)
            with self._lock:
                if self._stopping:
                    return
            try:
                if not self._launch(rank):
                    return
            except Exception as e:  # noqa: BLE001  (tried again, then given up with a message)
                log.error("starting front process %d again failed (attempt %d): %s", rank, attempt, e)
                continue
            log.warning("front process %d is back (pid %d)", rank, self._procs[rank][0].pid)
            return
        log.error("front process %d could not be started again; serving with the other %d front(s)", rank,
                  len(self._procs) + 1)

    def stop(self, timeout_s: float) -> bool:
        """Drain every other front (each as a SIGTERM drains a server, within timeout_s) and wait for them to
        exit, killing any that does not in time; True when each exited 0."""
        with self._lock:
            self._stopping = True
            procs = list(self._procs.values())
        clean = self._drain_and_join(procs, timeout_s)
        with self._lock:  # a front being started again drains itself once up (_launch_counted)
            self._started.wait_for(lambda: not self._starting, timeout=2 * self._start_timeout_s + timeout_s)
        return clean

    def _drain_and_join(self, procs: list, timeout_s: float) -> bool:
        for _, conn in procs:  # a front drains when its pipe to front 0 says so (or closes)
            try:
                conn.send("drain")
            except OSError:
                pass
        clean = True
        deadline = time.monotonic() + timeout_s + _STOP_MARGIN_S
        for process, conn in procs:
            process.join(timeout=max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.error("front process %s did not exit within %g s of its drain; killing it", process.pid,
                          timeout_s + _STOP_MARGIN_S)
                process.kill()
                process.join(timeout=10)
            clean = clean and process.exitcode == 0
            conn.close()
        return clean

    async def drain(self, timeout_s: float) -> bool:
        """stop() off the event loop (StreamRetServer's drain_also)."""
        return await asyncio.get_running_loop().run_in_executor(None, self.stop, timeout_s)


def _front_main(rank: int, spec: FrontSpec, conn) -> None:
    """A front process: the engines attached, one gRPC server on front 0's port until front 0 says drain (or is
    gone), then the drain a SIGTERM makes in a one-process server."""
    # Ctrl-C and SIGTERM reach every process of the group (a terminal, systemd): front 0 drains the fronts, so
    # that none exits on its own meanwhile (front 0 would take that for a crash and start it again)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from .. import gc_pauses
    from ..engine.attach import AttachedEngine

    if spec.log_level is not None:
        from ..logs import setup_logging

        setup_logging(spec.log_level, spec.log_format)
    if spec.switch_interval is not None:
        sys.setswitchinterval(spec.switch_interval)
    engine = AttachedEngine(spec.link, spec.engine_config)
    gc_pauses.freeze_startup()
    try:
        server = asyncio.run(_serve_until_told(spec.config, engine, conn))
    finally:
        engine.shutdown()
    log_served(rank, server)


async def _serve_until_told(config, engine, conn):
    """Serve until front 0 says drain (or its end of the pipe closes), then drain; the server."""
    from .server import StreamRetServer

    server = StreamRetServer(engine, config)
    await server.start()
    loop = asyncio.get_running_loop()
    told = asyncio.Event()

    def wait_for_word() -> None:
        try:
            conn.recv()
        except (EOFError, OSError):
            pass
        loop.call_soon_threadsafe(told.set)

    conn.send(("ready", os.getpid()))
    threading.Thread(target=wait_for_word, name="streamret-front-control", daemon=True).start()
    await told.wait()
    await server.stop()
    return server


def log_served(rank: int, server) -> None:
    """One log line of what a front's server answered (its gRPC counters: /metrics has front 0's alone)."""
    codes: dict[str, int] = {}
    chunks = 0
    for metric in server.metrics.rpcs.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                code = sample.labels["code"]
                codes[code] = codes.get(code, 0) + int(sample.value)
    for metric in server.metrics.chunks.collect():
        chunks += int(sum(s.value for s in metric.samples if s.name.endswith("_total")))
    by_code = ", ".join(f"{code} {n}" for code, n in sorted(codes.items()))
    logging.getLogger("streamret.serve").info(
        "front process %d (pid %d) stopped: it answered %d calls (%s) and acked %d chunks", rank, os.getpid(),
        sum(codes.values()), by_code or "none", chunks)
