"""Engine processes: several engines on one device, each in a process of its own, streams sharded over them.

One engine process is bound by its Python threads, not by the GPU: the text front, the tokenize stage and
the step loop share one GIL, and an H200 reads the default model's text about 15 times faster than one
process feeds it (bench/RESULTS.md, "Engine processes"). `ShardedEngine` implements `EngineAPI` (api.py)
over K child processes, each running a whole `Engine` (its own copy of the model on the same device, its
own step loop, durability and state store) for the streams whose id hashes to it. This process only
routes calls: a chunk crosses a pipe to its stream's engine and its ack comes back.

Behaviour is the in-process engine's, per stream: every call of a stream goes to the same engine, in
order, and its errors are that engine's exceptions (they are pickled across). Across streams:
- fairness between tenants and streams is per engine (each schedules its own share of the streams);
- `fork` between streams of different engines is an export from one and an import into the other;
- every engine uses the same state_dir: records are per stream, so the engine count may change between
  restarts (a stream's record is found by whichever engine owns it then);
- an engine process that dies fails its calls with UNAVAILABLE (its streams are safe up to their
  durable_seq, as after a crash) and is started again; the others go on serving.
The device's state budget and the host tier's are split between the engines; the model's memory is
paid once per engine (the default model: about 40 MB, plus a CUDA context each).

With `listen=True` the engine processes also take connections on a Unix socket each (`EngineLink`): other
processes (the server's front processes) reach them through an `AttachedEngine` (attach.py), served as this
process's pipe is, except that only this process shuts them down. `STREAMRET_ENGINE_READER` says which threads
read those connections: one for all and the pipe ("shared", the default, reader.py) or one each
("per_connection"), and with "shared_send" one thread also sends on all of them (pipe.py's SharedSender). An
engine process's own code is in engine_process.py.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import logging
import logging.handlers
import multiprocessing as mp
import os
import queue
import shutil
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import wait as wait_all
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidArgument, StreamRetError, Unavailable
from ..model.document_map import Roles
from ..rings import snapshot
from .at_exit import shut_down_at_exit
from .bounds import QueueBounds
from .config import Ack, Checkpoint, EngineConfig, StreamInfo, Summary
from .engine_process import serve, usable_cores
from .mps import MpsDaemon, mps_mode
from .pipe import Outbox
from .roles import ServesRoles
from .segments import Segment

log = logging.getLogger("streamret.engine")

# stats() keys that are histograms (added element by element) rather than recent samples (concatenated)
_HISTOGRAMS = frozenset({"step_streams_buckets", "wide_steps_waiting", "wide_steps_runnable",
                         "tokenize_call_items_buckets"})
# stats() keys whose engines' values are compared, not added
_MAXIMA = frozenset({"gc_pause_max_seconds", "max_held_s", "every_s"})  # (every_s: a step sampler's period)
# chunks whose pipe stamps (sent, answered) this process keeps per engine, for `recent_chunk_times`
RECENT_CHUNKS = 8192
# device memory an engine process is given by engine_procs("auto")
ENGINE_DEVICE_BYTES = 8 << 30


def engine_procs(procs: int | str, device: str = "auto") -> int:
    """An engine-process count: an int >= 1, or "auto": on a GPU, one per 4/3 host cores, at most 12 and at most
    one per 8 GiB of device memory (measured on an H200 with 16 cores: 12 engines read 20% more than 8 at 1,024
    streams, as much at 64; each holds a CUDA context, a model and its step graphs: 6.8-7.0 GiB with the default
    model and the GPU's step settings until session 37 gave the chunk kernel's scratch states slots of their own,
    2.5 GiB after, on an H100, where 12 then fit but read no faster than 9: the 8 GiB keeps 9 there);
    on the CPU, 1 (the model's own threads use the cores)."""
    if procs == "auto":
        from ..model.spec import resolve_device

        dev = resolve_device(device)
        if dev.type != "cuda":
            return 1
        import torch

        memory = torch.cuda.get_device_properties(dev).total_memory
        return max(1, min(12, 3 * usable_cores() // 4, memory // ENGINE_DEVICE_BYTES))
    return process_count(procs, f"engine processes must be an int >= 1 or 'auto', got {procs!r}")


def _on_cuda(device: str) -> bool:
    from ..model.spec import resolve_device

    return resolve_device(device).type == "cuda"


def process_count(value: int | str, error: str) -> int:
    """A count of processes from a flag or an argument: an int >= 1 (an int-valued string too); ValueError(error)
    otherwise."""
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or (isinstance(value, float) and value != n):
        raise ValueError(error)
    return n


def start_engine(spec: str = "default", device: str = "auto", state_dir: str | None = None,
                 config: EngineConfig | None = None, dtype: str | None = None, procs: int | str = 1):
    """An engine for a MODEL spec: `Engine` in this process when procs resolves to 1, else a `ShardedEngine`
    over that many engine processes (see `engine_procs`)."""
    n = engine_procs(procs, device)
    if n == 1:
        from .engine import Engine

        return Engine.from_model(spec, device, state_dir, config, dtype)
    return ShardedEngine(spec, device, state_dir, config, dtype, procs=n)


@functools.lru_cache(maxsize=1 << 16)  # asked per chunk: a dict lookup instead of a hash of the id
def shard_of(stream_id: str, shards: int) -> int:
    """The engine that owns a stream: a stable hash of its id (the same in every process and run)."""
    digest = hashlib.blake2b(stream_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


class _Shard:
    """This process's end of one engine process: calls out (an outbox), answers in (a reader thread)."""

    def __init__(self, rank: int, process: mp.process.BaseProcess, conn,
                 on_exit: Callable[[_Shard], None] | None = None,
                 on_answered: Callable[[list], None] | None = None) -> None:
        self.rank, self.process, self.conn = rank, process, conn
        self.on_exit = on_exit  # called (on the reader thread) once the process is gone
        # called with the `token`s of the calls answered in one batch (or failed), before their futures are set
        self.on_answered = on_answered
        self._lock = threading.Lock()
        self._waiting: dict[int, Future | tuple] = {}  # call number -> where its answer goes (post)
        self._tokens: dict[int, object] = {}
        self._ids = itertools.count(1)
        self._held: list[tuple] = []  # calls posted with hold, not yet handed to the outbox
        self.gone: str | None = None  # why calls fail now (the process exited)
        self.shut_down = False  # the ShardedEngine is shutting it down: its exit is no crash, and no restart follows
        self.hello: Future = Future()
        self._waiting[0] = self.hello
        # (stream id, seq, time.monotonic) of the last chunks as written to the pipe and as their acks came back
        self.sent_at: deque[tuple[str, int, float]] = deque(maxlen=RECENT_CHUNKS)
        self.answered_at: deque[tuple[str, int, float]] = deque(maxlen=RECENT_CHUNKS)
        self._outbox = Outbox(conn, f"streamret-shard-{rank}-send", on_error=self._unsent, sent_at=self.sent_at)
        self._reader = threading.Thread(target=self._read, name=f"streamret-shard-{rank}-read", daemon=True)
        self._reader.start()

    def send(self, op: str, *args, token: object = None) -> Future:
        """Queue a call; the future of its answer. token: handed to on_answered when the call is answered or
        fails (the ShardedEngine's queue-bound share of a chunk)."""
        fut: Future = Future()
        self.post(op, args, fut, token)
        return fut

    def post(self, op: str, args: tuple, waiter: Future | tuple[Callable[[list], None], object],
             token: object = None, hold: bool = False) -> None:
        """Queue a call whose answer goes to `waiter`: a Future, or (arrive, key): then arrive(arrivals) is called
        on the reader thread, arrivals a list of (key, (value, None) or (None, error)), with every answer of
        one batch from the engine that goes to that arrive (ShardedEngine.submit_append_to).

        hold: keep the call here until `release` (or the next call posted without hold, which goes after it), so
        that many calls cost the sending thread one wakeup."""
        with self._lock:
            if self.gone is not None:
                raise Unavailable(self.gone)
            n = next(self._ids)
            self._waiting[n] = waiter
            if token is not None:
                self._tokens[n] = token
            if hold:
                self._held.append((n, op, args))
                return
            if self._held:  # the held calls go first: a stream's calls reach its engine in order
                self._outbox.put([*self._held, (n, op, args)])
                self._held = []
                return
        self._outbox.put((n, op, args))

    def release(self) -> None:
        """Send the calls held so far (post's hold)."""
        with self._lock:
            if self._held:
                self._outbox.put(self._held)
                self._held = []

    def _settle(self, answers: list[tuple[int, bool, object]]) -> None:
        """Answer these calls, their tokens handed over first (in one go): futures are set, and each arrive of
        the (arrive, key) waiters is called once with all of its own."""
        tokens = self._tokens
        if tokens and self.on_answered is not None:  # (the reader and the outbox may settle at once)
            done = [t for t in (tokens.pop(n, None) for n, _, _ in answers) if t is not None]
            if done:
                self.on_answered(done)
        arrivals: dict[Callable[[list], None], list] = {}
        waiting = self._waiting
        for n, ok, value in answers:
            waiter = waiting.pop(n, None)
            if waiter is None:
                continue
            if type(waiter) is tuple:
                arrive, key = waiter
                got = arrivals.get(arrive)
                if got is None:
                    got = arrivals[arrive] = []
                got.append((key, (value, None) if ok else (None, value)))
            elif not waiter.done():
                waiter.set_result(value) if ok else waiter.set_exception(value)
        for arrive, got in arrivals.items():
            try:
                arrive(got)
            except Exception:  # noqa: BLE001  (a caller's bug: the other callers' answers still go)
                log.exception("handing %d answers of engine process %d to %r failed", len(got), self.rank, arrive)

    def call(self, op: str, *args):
        return self.send(op, *args).result()

    def _unsent(self, batch: list, error: Exception, broken: bool) -> None:
        """Calls that could not be sent fail: the pipe broke (the reader then sees the process go), or their
        arguments do not pickle."""
        failure = Unavailable(self._exited()) if broken else InvalidArgument(
            f"a call's arguments cannot be sent to an engine process: {error}")
        self._settle([(n, False, failure) for n, _, _ in batch])

    def _exited(self) -> str:
        if self.shut_down:
            return f"the engine was shut down (engine process {self.rank} with it): it takes no more calls"
        self.process.join(timeout=5)
        return (f"engine process {self.rank} exited (code {self.process.exitcode}) and is being restarted; its "
                "streams are safe up to their durable_seq: resend from there shortly")

    def _read(self) -> None:
        try:
            while True:
                try:
                    batch = self.conn.recv()
                except (EOFError, OSError):
                    break
                now = time.monotonic()
                self.answered_at.extend((v.stream_id, v.seq, now) for _, ok, v in batch if ok and type(v) is Ack)
                self._settle(batch)
        except Exception:  # noqa: BLE001  (an answer that does not unpickle: the link is lost, so is the process)
            log.exception("engine process %d sent what cannot be read; stopping it", self.rank)
            self.process.kill()
        finally:
            why = self._exited()
            with self._lock:
                self.gone = why
                waiting = list(self._waiting)
            if self.process.exitcode not in (0, None) or waiting:
                log.error("%s", why)
            self._settle([(n, False, Unavailable(why)) for n in waiting])
            if self.on_exit is not None:
                self.on_exit(self)

    def close(self) -> None:
        self._outbox.close()
        self.conn.close()


@dataclass(frozen=True)
class EngineLink:
    """Where front processes connect to the engine processes: a Unix socket per rank in a private folder, and
    the key each connection proves it knows (multiprocessing's authkey). It pickles: a front process gets it."""

    folder: str
    authkey: bytes
    procs: int

    @classmethod
    def make(cls, procs: int) -> EngineLink:
        return cls(tempfile.mkdtemp(prefix="streamret-engines-"), os.urandom(32), procs)

    def address(self, rank: int) -> tuple[str, bytes]:
        """(socket path, authkey) of engine process `rank` (the same for the processes started in its place)."""
        return os.path.join(self.folder, f"engine-{rank}.sock"), self.authkey

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class ShardedEngine(ServesRoles):
    """`EngineAPI` over `procs` engine processes on one device (see the module docstring).

    The engine processes are started with multiprocessing's "spawn" (CUDA does not survive a fork), which
    imports the calling script's main module in each of them: a script that makes one at its top level must
    do so under `if __name__ == "__main__":`, as with any spawned process."""

    link: EngineLink | None = None  # where front processes connect (listen=True)
    _mps: MpsDaemon | None = None  # the engine processes' own MPS daemon (mps.py), while they run
    _started = False  # every engine process said hello (from then on one that exits is started again)

    def __init__(self, spec: str = "default", device: str = "auto", state_dir: str | None = None,
                 config: EngineConfig | None = None, dtype: str | None = None, procs: int = 2,
                 start_timeout_s: float = 600.0, listen: bool = False):
        """listen: the engine processes also take connections from front processes (`self.link`, attach.py)."""
        if not isinstance(procs, int) or procs < 1:
            raise ValueError(f"procs must be an int >= 1 (engine processes), got {procs!r}")
        self.config = config = config or EngineConfig()
        self.procs = procs
        self.state_dir = state_dir  # every engine's durable store (one record per stream)
        ctx = mp.get_context("spawn")  # CUDA cannot be used in a forked child
        self._logs = ctx.Queue()
        self._logs_end = threading.Event()
        self._log_thread = threading.Thread(target=_relay_logs, args=(self._logs, self._logs_end),
                                            name="streamret-shard-logs", daemon=True)
        self._log_thread.start()
        level = logging.getLogger("streamret").getEffectiveLevel()
        self._shards: list[_Shard] = []
        self._closed = False
        self._started = False
        self._lock = threading.Lock()
        self._ctx, self._start_timeout_s = ctx, start_timeout_s
        self.link = EngineLink.make(procs) if listen else None
        try:
            self._mps = MpsDaemon.start(procs, _on_cuda(device))  # (None: the processes time-slice the GPU)
            try:
                hellos = self._start_all(spec, device, state_dir, config, dtype, level)
            except Exception as e:
                if self._mps is None or mps_mode() == "on":
                    raise
                log.warning("the engine processes did not start with a CUDA MPS daemon (%s); starting them again "
                            "without it (STREAMRET_MPS=off skips this attempt)", e)
                self._closed, self._shards = False, []
                hellos = self._start_all(spec, device, state_dir, config, dtype, level)
        except BaseException:
            self._end_relays()
            raise
        first = hellos[0]
        self.fingerprint: str = first["fingerprint"]
        self._embed_dim: int = first["embed_dim"]
        self.roles: Roles = first["roles"]  # applied here: the engine processes return plain embeddings
        self.model_info: dict = first["model_info"]  # what GetModelInfo says (service/model_info.py)
        self._bounds = QueueBounds(config.max_pending_chunks_per_stream, config.max_pending_bytes_per_stream,
                                   config.max_pending_chunks, config.max_pending_bytes)
        self._bounds_lock = threading.Lock()  # (taken per chunk: not the lock of starts and shutdowns)
        self._started = True  # from now on an engine process that exits is started again
        shut_down_at_exit(self)

    def _start_all(self, spec: str, device: str, state_dir: str | None, config: EngineConfig, dtype: str | None,
                   level: int) -> list[dict]:
        """Start every engine process (pointed at the MPS daemon, if any) and wait for their hellos; on failure,
        the processes that did start are hung up on and the daemon is stopped."""
        env = self._mps.env if self._mps is not None else {}
        self._serve_args = (self.procs, spec, device, state_dir, config, dtype, self._logs, level, env)
        try:
            for rank in range(self.procs):
                self._shards.append(self._spawn(rank))
            return [s.hello.result(timeout=self._start_timeout_s) for s in self._shards]
        except BaseException:
            self._closed = True  # no restarts: the engines that did start are hung up on
            self._stop_processes(hang_up=True)
            raise

    def _spawn(self, rank: int) -> _Shard:
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(target=serve, name=f"streamret-engine-{rank}", daemon=True,
                                    args=(child, rank, *self._serve_args,
                                          None if self.link is None else self.link.address(rank)))
        process.start()
        child.close()
        return _Shard(rank, process, parent, on_exit=self._exited, on_answered=self._release_many)

    def _exited(self, shard: _Shard) -> None:
        """An engine process is gone while this engine runs: start another in its place (its streams reload from
        their durable records on their next call; without a state_dir they start again empty), in the background,
        trying a few times. Calls to its streams fail as resendable meanwhile."""
        with self._lock:
            if not self._started or self._closed or self._shards[shard.rank] is not shard:
                return  # (an engine that fails while they all start fails the start instead)
        threading.Thread(target=self._restart, args=(shard,), name=f"streamret-shard-{shard.rank}-restart",
                         daemon=True).start()

    def _restart(self, dead: _Shard) -> None:
        for attempt, pause in enumerate((0.0, 5.0, 30.0), start=1):
            time.sleep(pause)
            with self._lock:
                if self._closed:
                    return
                fresh = self._spawn(dead.rank)
            try:
                hello = fresh.hello.result(timeout=self._start_timeout_s)
                if hello["fingerprint"] != self.fingerprint:
                    raise RuntimeError(f"it loaded another model (fingerprint {hello['fingerprint']})")
            except Exception as e:  # noqa: BLE001  (tried again, then given up with a message)
                log.error("restarting engine process %d failed (attempt %d): %s", dead.rank, attempt, e)
                fresh.on_exit = None
                fresh.close()
                fresh.process.join(timeout=30)
                if fresh.process.is_alive():
                    fresh.process.kill()
                continue
            with self._lock:
                if not self._closed:
                    self._shards[dead.rank] = fresh
                    dead.close()
                    log.warning("engine process %d is back (pid %d)", dead.rank, fresh.process.pid)
                    return
            fresh.on_exit = None  # this engine shut down meanwhile
            fresh.call("shutdown", False, 0.0)
            fresh.close()
            return
        with dead._lock:
            dead.gone = (f"engine process {dead.rank} exited and could not be restarted (see the server log); its "
                         "streams are safe up to their durable_seq: restart the server")

    @classmethod
    def from_model(cls, spec: str = "default", device: str = "auto", state_dir: str | None = None,
                   config: EngineConfig | None = None, dtype: str | None = None, procs: int = 2) -> ShardedEngine:
        return cls(spec, device, state_dir, config, dtype, procs)

    def __enter__(self) -> ShardedEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    @property
    def embed_dim(self) -> int:
        return self._embed_dim

    @property
    def pids(self) -> list[int]:
        """The engine processes' ids, by rank."""
        return [s.process.pid for s in self._shards]

    def _shard(self, stream_id: str) -> _Shard:
        if not isinstance(stream_id, str):  # the engine names the bad value; hashing needs a str first
            return self._shards[0]
        return self._shards[shard_of(stream_id, self.procs)]

    def _call(self, op: str, stream_id: str, *args):
        return self._shard(stream_id).call(op, stream_id, *args)

    # streams

    def open(self, stream_id: str, create_if_missing: bool = True, group: str | None = None,
             durable: bool = True) -> StreamInfo:
        return self._call("open", stream_id, create_if_missing, group, durable)

    def exists(self, stream_id: str) -> bool:
        return self._call("exists", stream_id)

    def info(self, stream_id: str) -> StreamInfo:
        return self._call("info", stream_id)

    def close(self, stream_id: str, keep_state: bool = False) -> None:
        return self._call("close", stream_id, keep_state)

    def evict(self, stream_id: str) -> None:
        return self._call("evict", stream_id)

    def fork(self, src: str, dst: str) -> StreamInfo:
        a, b = self._shard(src), self._shard(dst)
        if a is b:
            return a.call("fork", src, dst)
        return b.call("import_fork", dst, a.call("export_state", src), src)

    def export_state(self, stream_id: str) -> bytes:
        return self._call("export_state", stream_id)

    def import_state(self, stream_id: str, data: bytes) -> StreamInfo:
        return self._call("import_state", stream_id, bytes(data))

    # appends

    def submit_append(self, stream_id: str, seq: int, data: bytes | str, flush: bool = False,
                      durable: bool = False, group: str | None = None) -> Future:
        """As Engine.submit_append. A full queue raises TooBusy here, at once (the same bounds as the engine's,
        counted in this process until the ack); every other error of the engine comes with the Future."""
        fut: Future = Future()
        self._submit(fut, stream_id, seq, data, flush, durable, group)
        return fut

    def submit_append_to(self, arrive: Callable[[list], None], key: object, stream_id: str, seq: int,
                         data: bytes | str, flush: bool = False, durable: bool = False, group: str | None = None,
                         hold: bool = False) -> None:
        """submit_append without a Future, for a caller that takes acks in batches (the service's AckRelay): once
        the chunk is answered, arrive(arrivals) is called on a reader thread of this engine, arrivals a list of
        (key, (ack, None) or (None, error)) holding this chunk's and those of every other chunk with the same
        arrive answered in the same batch. TooBusy and a dead engine process raise here, as in submit_append.

        hold: the chunk waits in this process until a `release_held()` (or the next call to its engine, which goes
        after it), so that the chunks of one turn of an event loop cost one wakeup of each engine's sending thread
        and cross in one message: the caller must call release_held() soon after."""
        self._submit((arrive, key), stream_id, seq, data, flush, durable, group, hold)

    def recent_chunk_times(self) -> dict[str, list[tuple[str, int, float]]]:
        """The last chunks' stamps in this process (time.monotonic, the clock of every process of the host), by
        engine stream id and seq: "pipe_sent" as the outbox wrote each to its engine's pipe, "server_answered" as
        the reader thread got its ack back (RECENT_CHUNKS per engine; for benches, not for every scrape)."""
        return {"pipe_sent": [x for s in self._shards for x in snapshot(s.sent_at)],
                "server_answered": [x for s in self._shards for x in snapshot(s.answered_at)]}

    def release_held(self) -> None:
        """Send every chunk submitted with hold (submit_append_to) so far."""
        for s in self._shards:
            s.release()

    def _submit(self, waiter: Future | tuple, stream_id: str, seq: int, data: bytes | str, flush: bool,
                durable: bool, group: str | None, hold: bool = False) -> None:
        shard = self._shard(stream_id)
        if isinstance(data, (bytearray, memoryview)):  # (a memoryview does not pickle)
            data = bytes(data)
        nbytes = _nbytes(data)
        with self._bounds_lock:
            self._bounds.reserve(stream_id, nbytes)
        try:
            # its share of the bounds goes back (with the others of its batch) before it is answered
            shard.post("submit_append", (stream_id, seq, data, flush, durable, group), waiter,
                       token=(stream_id, nbytes), hold=hold)
        except BaseException:
            self._release_many([(stream_id, nbytes)])
            raise

    def _release_many(self, shares: list[tuple[str, int]]) -> None:
        with self._bounds_lock:
            for stream_id, nbytes in shares:
                self._bounds.release(stream_id, nbytes)

    def append(self, stream_id: str, seq: int, data: bytes | str, flush: bool = False, durable: bool = False,
               group: str | None = None) -> Ack:
        return self.submit_append(stream_id, seq, data, flush, durable, group).result()

    def flush(self, stream_id: str) -> Ack:
        return self._call("flush", stream_id)

    # outputs

    def embedding(self, stream_id: str, role: str = "query") -> np.ndarray:
        """As Engine.embedding; the role is applied here, to the plain embedding an engine process returns."""
        self.check_role(role)
        return self.as_role(self._call("embedding", stream_id), role)

    def encode(self, texts, batch_size: int = 256, show_progress_bar: bool = False, normalize: bool = True,
               role: str = "query"):
        """As Engine.encode: each text is read as a temporary stream, spread over the engines by its id."""
        from ..batch.encode import encode_with_engine

        return encode_with_engine(self, texts, batch_size=batch_size, show_progress_bar=show_progress_bar,
                                  normalize=normalize, role=role)

    def embed_documents(self, docs: list, **options) -> None:
        """embed_table's rows (runner._Doc), run in sub-batches by the engine processes themselves, each on
        its own engine (streamret/batch/sub_batches.py): a document costs one pipe trip per sub-batch, not one
        per engine call. Fills in each document's results or error."""
        from ..batch.sub_batches import run_sub_batches

        run_sub_batches(lambda rank, op, args: self._shards[rank].send(op, *args), self.procs, docs, **options)

    def segments(self, stream_id: str, with_embeddings: bool = True) -> list[Segment]:
        return self._call("segments", stream_id, with_embeddings)

    def summarize(self, stream_id: str, k: int = 5, mode: str = "extractive", max_new_tokens: int = 64) -> Summary:
        return self._call("summarize", stream_id, k, mode, max_new_tokens)

    # the whole engine

    def _each(self, op: str, *args) -> tuple[list, int]:
        """op on every engine at once: the answers of those that answered, in rank order, and how many are down
        (exited, being restarted); any other error is raised once all answered."""
        futures, down = [], 0
        for s in self._shards:
            try:
                futures.append(s.send(op, *args))
            except Unavailable:
                down += 1
        wait_all(futures)
        answers = []
        for f in futures:
            try:
                answers.append(f.result())
            except Unavailable:  # it exited meanwhile
                down += 1
        return answers, down

    def checkpoint_all(self, timeout_s: float | None = None) -> Checkpoint:
        """Every live engine's checkpoint, combined; an engine that is down is logged (its streams are as durable
        as their records)."""
        reports, down = self._each("checkpoint_all", timeout_s)
        if down:
            log.warning("checkpoint: %d engine process(es) down; their streams are durable up to their records",
                        down)
        return Checkpoint.combine(reports)

    def stats(self) -> dict:
        """Every engine's counters added up (recent samples put together), plus engine_procs."""
        answers, down = self._each("stats")
        if not answers:
            raise Unavailable(f"none of the {self.procs} engine processes answered; restart the server")
        merged = merge_stats(answers)
        merged["engine_procs"] = self.procs
        merged["mps"] = self._mps is not None  # the processes share the GPU through their own MPS daemon (mps.py)
        merged["engine_procs_down"] = down
        return merged

    def durable_writable(self) -> bool | None:
        answers, _ = self._each("durable_writable")
        return None if not answers or any(a is None for a in answers) else all(answers)

    def shutdown(self, checkpoint: bool = True, timeout_s: float | None = None) -> Checkpoint | None:
        """Shut every engine down (each applies and writes as Engine.shutdown does), then end the processes."""
        with self._lock:
            if self._closed:
                return None
            self._closed = True
        reports = []
        futures, sent_to = [], []
        for s in self._shards:
            s.shut_down = True
            try:
                futures.append(s.send("shutdown", checkpoint, timeout_s))
                sent_to.append(s.rank)
            except Unavailable as e:
                log.warning("%s", e)
        # an engine applies and writes for at most timeout_s (then drops what is left): past that and a margin
        # (one deadline for all of them) it is stuck, and is killed below
        limit = None if timeout_s is None else timeout_s + 60.0
        wait_all(futures, timeout=limit)
        for f in futures:
            if not f.done():
                log.warning("an engine process did not shut down within %s s", limit)
                continue
            try:
                reports.append(f.result())
            except StreamRetError as e:
                log.warning("an engine process did not shut down cleanly: %s", e)
        self._stop_processes(done={rank for rank, f in zip(sent_to, futures) if f.done() and not f.exception()})
        reports = [r for r in reports if r is not None]
        return Checkpoint.combine(reports) if checkpoint and reports else None

    def _stop_processes(self, hang_up: bool = False, done: set[int] = frozenset()) -> None:
        """Wait for the engine processes to exit (after their shutdown), killing any that does not. hang_up:
        close the pipes first (a failed start: the engines that did start see the pipe close and exit). done:
        the ranks that answered their shutdown: everything of theirs is written, only the process's exit is
        left, so they get 5 s instead of 30 (now and then one does not exit; cause not found: RELIABILITY 3c)."""
        if hang_up:
            for s in self._shards:
                s.close()
        for s in self._shards:
            s.process.join(timeout=5 if s.rank in done else 30)
            if s.process.is_alive() and s.rank in done:
                log.warning("engine process %d answered its shutdown (its streams are written) but had not exited "
                            "5 s later; killing it", s.rank)
                s.process.kill()
                s.process.join(timeout=5)
            elif s.process.is_alive():
                log.error("engine process %d did not exit after its shutdown; killing it", s.rank)
                s.process.kill()
                s.process.join(timeout=5)
            s.close()
        # (not a None put on the queue: a put takes the queue's write lock, which an engine process killed while
        # it logged holds for good, and this process's exit would then wait for it forever)
        if self._mps is not None:  # (after its clients are gone)
            self._mps.stop()
            self._mps = None
        if self._started:  # (a failed start: the logs and the link may serve a second attempt, without MPS)
            self._end_relays()

    def _end_relays(self) -> None:
        """Stop relaying the engine processes' logs and remove the fronts' sockets' folder."""
        self._logs_end.set()
        self._log_thread.join(timeout=5)
        if self.link is not None:
            self.link.remove()


def merge_stats(parts: list[dict]) -> dict:
    """Several engines' stats() as one: numbers added, histograms added element by element, recent samples
    put together, nested dicts merged the same way; durable_writable is True only when all are."""
    out: dict = {}
    for key in dict.fromkeys(k for p in parts for k in p):  # (a key some engines lack, e.g. a lock site)
        values = [p.get(key) for p in parts]
        if key != "durable_writable":
            values = [v for v in values if v is not None]
            if not values:  # None in every engine
                out[key] = None
                continue
        first = values[0]
        if key == "durable_writable":
            out[key] = None if any(v is None for v in values) else all(values)
        elif key in _MAXIMA:
            out[key] = max(values)
        elif key in _HISTOGRAMS:
            out[key] = [sum(col) for col in zip(*values)]
        elif isinstance(first, dict):
            out[key] = merge_stats(values)
        elif isinstance(first, list):
            out[key] = [x for v in values for x in v]
        elif isinstance(first, (int, float)) and not isinstance(first, bool):
            out[key] = sum(values)
        else:
            out[key] = first
    return out


def _relay_logs(records, end: threading.Event) -> None:
    """Hand the engine processes' log records to this process's handlers (the server's format and level), until
    `end` is set and none is left."""
    while True:
        try:
            record = records.get(timeout=0.1)
        except queue.Empty:
            if end.is_set():
                return
            continue
        except (EOFError, OSError):  # the queue's pipe is gone
            return
        logging.getLogger(record.name).handle(record)


def _nbytes(data) -> int:
    """The bytes a chunk counts for against the queue bounds (the engine's count; a str it cannot encode
    fails there, with its own error)."""
    if isinstance(data, str):
        return len(data.encode("utf-8", "surrogatepass"))
    return len(data) if isinstance(data, bytes) else 0  # (bytearray and memoryview are made bytes before)
