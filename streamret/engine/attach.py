"""A ShardedEngine of another process's engine processes: what a front process (service/fronts.py) serves.

The server's first process owns the engine processes (shards.py: it starts them, starts one again in the place
of one that exits, shuts them down). Started with `listen=True` they also take connections on a Unix socket
each (`ShardedEngine.link`); `AttachedEngine(link)` connects to every one of them and is then an `EngineAPI`
like the owner's: a stream's calls go to the engine process that owns it (shard_of), over this process's own
connection, and its answers come back on it. What differs:
- an engine process that exits fails this process's calls to it with UNAVAILABLE, as the owner's do, while
  this process connects again in the background (the owner starts a new one at the same address);
- shutdown() only hangs up: the engines stay, for the owner to shut down;
- the queue bounds (max_pending_*) are counted per process: each front holds up to the limits on its own.
"""

from __future__ import annotations

import logging
import threading
import time
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client

from ..model.document_map import Roles
from .bounds import QueueBounds
from .config import EngineConfig
from .shards import EngineLink, ShardedEngine, _Shard

log = logging.getLogger("streamret.engine")

_RETRY_S = (0.05, 2.0)  # first and longest pause between tries to connect to an engine process that is down


class _Process:
    """What a _Shard asks of its engine process, for one this process did not start: its pid (from the hello)
    and nothing to wait for or kill (a connection that cannot be read is closed instead)."""

    exitcode = None

    def __init__(self, conn) -> None:
        self._conn = conn
        self.pid: int | None = None

    def join(self, timeout: float | None = None) -> None:
        pass

    def is_alive(self) -> bool:
        return False

    def kill(self) -> None:
        self._conn.close()


class _AttachedShard(_Shard):
    def _exited(self) -> str:
        if self.shut_down:
            return f"this front process is shutting down (its link to engine process {self.rank} with it)"
        return (f"engine process {self.rank} exited and is being restarted; its streams are safe up to their "
                "durable_seq: resend from there shortly")


class AttachedEngine(ShardedEngine):
    """`EngineAPI` over the engine processes of another process (the module docstring)."""

    def __init__(self, link: EngineLink, config: EngineConfig | None = None, start_timeout_s: float = 60.0):
        self.config = config = config or EngineConfig()
        self.procs = link.procs
        self.state_dir = None  # (the owner's: this process writes nothing itself)
        self.link = link
        self._lock = threading.Lock()
        self._closed = False
        self._started = False
        self._start_timeout_s = start_timeout_s
        self._shards: list[_Shard] = []
        deadline = time.monotonic() + start_timeout_s
        try:
            for rank in range(link.procs):
                self._shards.append(self._connect_when_up(rank, deadline))
            hellos = [s.hello.result(timeout=start_timeout_s) for s in self._shards]
        except BaseException:
            self._closed = True
            for s in self._shards:
                s.close()
            raise
        first = hellos[0]
        self.fingerprint: str = first["fingerprint"]
        self._embed_dim: int = first["embed_dim"]
        self.roles: Roles = first["roles"]  # applied here: the engine processes return plain embeddings
        self.model_info: dict = first["model_info"]
        self._bounds = QueueBounds(config.max_pending_chunks_per_stream, config.max_pending_bytes_per_stream,
                                   config.max_pending_chunks, config.max_pending_bytes)
        self._bounds_lock = threading.Lock()
        self._started = True

    def _connect(self, rank: int) -> _Shard:
        path, authkey = self.link.address(rank)
        conn = Client(path, family="AF_UNIX", authkey=authkey)
        process = _Process(conn)
        shard = _AttachedShard(rank, process, conn, on_exit=self._exited, on_answered=self._release_many)
        shard.hello.add_done_callback(lambda f: setattr(process, "pid", None if f.exception() else f.result()["pid"]))
        return shard

    def _connect_when_up(self, rank: int, deadline: float) -> _Shard:
        """_connect, tried again while the engine process is down (being started again) until `deadline`."""
        pause = _RETRY_S[0]
        while True:
            try:
                return self._connect(rank)
            except (OSError, EOFError):
                if time.monotonic() + pause > deadline:
                    raise
            time.sleep(pause)
            pause = min(2 * pause, _RETRY_S[1])

    def _exited(self, shard: _Shard) -> None:
        """A link is lost (its engine process exited, or is being replaced): connect again in the background,
        until this engine shuts down; calls to its streams fail as resendable meanwhile."""
        with self._lock:
            if not self._started or self._closed or self._shards[shard.rank] is not shard:
                return
        threading.Thread(target=self._reconnect, args=(shard,), name=f"streamret-shard-{shard.rank}-reconnect",
                         daemon=True).start()

    def _reconnect(self, dead: _Shard) -> None:
        pause, said = _RETRY_S[0], False
        while True:
            time.sleep(pause)
            pause = min(2 * pause, _RETRY_S[1])
            with self._lock:
                if self._closed:
                    return
            try:
                fresh = self._connect(dead.rank)  # (refused until the new engine process listens)
            except (OSError, EOFError, AuthenticationError):  # (EOF: it went away during the handshake)
                continue
            try:
                hello = fresh.hello.result(timeout=self._start_timeout_s)
                if hello["fingerprint"] != self.fingerprint:
                    raise RuntimeError(f"it serves another model (fingerprint {hello['fingerprint']})")
            except Exception as e:  # noqa: BLE001  (tried again; said once)
                fresh.on_exit = None
                fresh.close()
                if not said:
                    log.error("connecting again to engine process %d failed: %s; trying on", dead.rank, e)
                    said = True
                continue
            with self._lock:
                if not self._closed:
                    self._shards[dead.rank] = fresh
                    dead.close()
                    log.warning("connected again to engine process %d (pid %s)", dead.rank, hello["pid"])
                    return
            fresh.on_exit = None
            fresh.close()
            return

    @property
    def pids(self) -> list[int | None]:
        """The engine processes' ids, by rank (None for one not connected yet)."""
        return [s.process.pid for s in self._shards]

    def checkpoint_all(self, timeout_s: float | None = None) -> None:
        """Nothing here: a front's drain ends with its calls answered, and the engine processes' checkpoint is
        their owner's (front 0's, once every front drained). None tells the server so."""
        return None

    def shutdown(self, checkpoint: bool = True, timeout_s: float | None = None) -> None:
        """Hang up on every engine process (they stay up: the owner shuts them down). Calls still waiting fail
        with UNAVAILABLE."""
        with self._lock:
            if self._closed:
                return None
            self._closed = True
        for s in self._shards:
            s.shut_down = True
            s.close()
        return None
