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
("per_connection"), and with "shared_send" one thread also sends on all of them (_SharedSender).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import logging
import logging.handlers
import multiprocessing as mp
import os
import pickle
import queue
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from dataclasses import dataclass, replace
from multiprocessing import AuthenticationError
from multiprocessing.reduction import ForkingPickler

import numpy as np

from .. import gc_pauses
from ..errors import FailedPrecondition, InvalidArgument, StreamRetError, Unavailable
from ..rings import snapshot
from .at_exit import shut_down_at_exit
from .bounds import QueueBounds
from .config import Ack, Checkpoint, EngineConfig, StreamInfo, Summary
from .gil import switch_interval_s
from .mps import MpsDaemon, mps_mode
from .reader import SharedReader, engine_reader
from .segments import Segment

log = logging.getLogger("streamret.engine")

# calls answered at once by the engine's intake: run on the child's reader thread, in arrival order
_INLINE = frozenset({"submit_append"})
ADMIT_TIMEOUT_S = 10.0  # for a connection to an engine process's socket to prove it knows the key (_admit)
# what a connection other than the owner's (a front process: attach.py) may ask: the calls that serve a client,
# not the engine-wide ones (shutdown, checkpoint_all: its owner's, after every front drained) nor any other name
_ATTACHED_OPS = frozenset({"open", "exists", "info", "close", "evict", "fork", "import_fork", "export_state",
                           "import_state", "submit_append", "flush", "embedding", "segments", "summarize", "stats",
                           "durable_writable", "embed_documents", "cancel_documents"})
# stats() keys that are histograms (added element by element) rather than recent samples (concatenated)
_HISTOGRAMS = frozenset({"step_streams_buckets", "wide_steps_waiting", "wide_steps_runnable"})
# stats() keys whose engines' values are compared, not added
_MAXIMA = frozenset({"gc_pause_max_seconds", "max_held_s", "every_s"})  # (every_s: a step sampler's period)
# chunks whose pipe stamps (sent, answered) this process keeps per engine, for `recent_chunk_times`
RECENT_CHUNKS = 8192


def engine_procs(procs: int | str, device: str = "auto") -> int:
    """An engine-process count: an int >= 1, or "auto": on a GPU, one per 4/3 host cores, at most 12 and at most
    one per 4 GiB of device memory (measured on an H200 with 16 cores: 12 engines read 20% more than 8 at 1,024
    streams, as much at 64; each holds a CUDA context, a model and its step graphs); on the CPU, 1 (the model's
    own threads use the cores)."""
    if procs == "auto":
        from ..model.spec import resolve_device

        dev = resolve_device(device)
        if dev.type != "cuda":
            return 1
        import torch

        memory = torch.cuda.get_device_properties(dev).total_memory
        return max(1, min(12, 3 * _cores() // 4, memory // (4 << 30)))
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


def _cores() -> int:
    """The cores this process may run on (a container's share, where the OS says)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


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


_CLOSE = object()  # an outbox's last message: send what came before, then stop


class _Outbox:
    """Messages to one end of a pipe, sent by a thread of their own in batches: a caller never blocks on a
    full pipe or pays for pickling, and a step's many acks cross in one message. A put is one append to a
    SimpleQueue (C code, no Python lock or condition): it is paid per chunk by the server's event loop and by
    an engine's step loop. A put is a message (a tuple) or a list of messages (the calls a _Shard held).

    sender: send on that shared thread instead of one of this outbox's own (STREAMRET_ENGINE_READER=shared_send)."""

    def __init__(self, conn, name: str, on_error=None, sent_at: deque | None = None,
                 sender: _SharedSender | None = None) -> None:
        # sent_at: where (stream id, seq, time.monotonic) of each submit_append goes as its message is written
        self.conn, self.on_error, self.sent_at = conn, on_error, sent_at
        self._done = threading.Event()  # nothing more is sent: closed, or the other end is gone
        if sender is not None:
            put = sender.put
            self.put = lambda item: put((self, item))
            return
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self.put = self._queue.put
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def close(self) -> None:
        """Send what is queued, then stop."""
        self.put(_CLOSE)
        self._done.wait(timeout=30)

    def _run(self) -> None:
        get, waiting = self._queue.get, self._queue.qsize
        try:
            while True:
                batch = []
                for item in [get(), *(get() for _ in range(waiting()))]:  # what came meanwhile: the same message
                    batch.extend(item) if type(item) is list else batch.append(item)
                if not self.send(batch):
                    return
        finally:  # (a close never waits for a thread that is gone)
            self._done.set()

    def send(self, batch: list) -> bool:
        """Write these messages as one (those before a _CLOSE among them); False once nothing more is to be sent
        (closed, or the other end is gone): later messages are dropped."""
        if self._done.is_set():
            return False
        if _CLOSE in batch:  # (identity first: messages are tuples, never equal to it)
            batch = batch[:batch.index(_CLOSE)]
            if batch:
                self._write(batch)
            self._done.set()
            return False
        if not self._write(batch):
            self._done.set()
            return False
        return True

    def _write(self, batch: list) -> bool:
        """False when the other end is gone (or this one closed)."""
        try:
            data = ForkingPickler.dumps(batch)
        except Exception:  # noqa: BLE001  (a message that does not pickle fails alone, the rest go)
            good = []
            for message in batch:
                try:
                    ForkingPickler.dumps(message)
                except Exception as e:  # noqa: BLE001
                    if self.on_error is not None:
                        self.on_error([message], e, False)
                else:
                    good.append(message)
            if not good:
                return True
            batch, data = good, ForkingPickler.dumps(good)
        if self.sent_at is not None:  # stamped before the write: the engine may read it before the write returns
            now = time.monotonic()
            self.sent_at.extend((args[0], args[1], now) for _, op, args in batch if op == "submit_append")
        try:
            self.conn.send_bytes(data)
        except (OSError, ValueError) as e:  # the other end is gone (or this one closed)
            if self.on_error is not None:
                self.on_error(batch, e, True)
            return False
        return True


class _SharedSender:
    """One thread that sends for many outboxes (an engine process's connections): what was put meanwhile goes
    out as one message per outbox, in the order put. Fewer threads to wake than an outbox's own each, at a
    price: a write that blocks (a full pipe whose reader is slow) holds up every other connection's answers."""

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self.put = self._queue.put  # (outbox, item): item as _Outbox.put takes it
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def _run(self) -> None:
        get, waiting = self._queue.get, self._queue.qsize
        while True:
            batches: dict[_Outbox, list] = {}
            for outbox, item in [get(), *(get() for _ in range(waiting()))]:
                batch = batches.get(outbox)
                if batch is None:
                    batch = batches[outbox] = []
                batch.extend(item) if type(item) is list else batch.append(item)
            for outbox, batch in batches.items():
                try:
                    outbox.send(batch)
                except Exception:  # noqa: BLE001  (a bug: that connection stops, the others go on)
                    log.exception("sending %d messages on %r failed; that connection sends no more", len(batch),
                                  outbox.conn)
                    outbox._done.set()


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
        self._outbox = _Outbox(conn, f"streamret-shard-{rank}-send", on_error=self._unsent, sent_at=self.sent_at)
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


class ShardedEngine:
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
        process = self._ctx.Process(target=_serve, name=f"streamret-engine-{rank}", daemon=True,
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

    def embedding(self, stream_id: str) -> np.ndarray:
        return self._call("embedding", stream_id)

    def encode(self, texts, batch_size: int = 256, show_progress_bar: bool = False, normalize: bool = True):
        """As Engine.encode: each text is read as a temporary stream, spread over the engines by its id."""
        from ..batch.encode import encode_with_engine

        return encode_with_engine(self, texts, batch_size=batch_size, show_progress_bar=show_progress_bar,
                                  normalize=normalize)

    def embed_documents(self, docs: list, **options) -> None:
        """embed_table's rows (arrow_table._Doc), run in sub-batches by the engine processes themselves, each on
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


# ----------------------------------------------------------------------------------------------------
# the engine process


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


def _switch_interval_from_env() -> None:
    """STREAMRET_SWITCH_INTERVAL_MS: Python's switch interval in this engine process (default 5 ms), for tuning
    how soon the step thread gets the GIL back from the tokenize and connection threads."""
    value = os.environ.get("STREAMRET_SWITCH_INTERVAL_MS", "")
    if not value:
        return
    try:
        seconds = switch_interval_s(float(value) / 1e3, "STREAMRET_SWITCH_INTERVAL_MS / 1000")
    except ValueError:
        raise ValueError(f"STREAMRET_SWITCH_INTERVAL_MS={value!r}: give milliseconds in (0, 1000], e.g. 0.5") from None
    sys.setswitchinterval(seconds)


def _serve(conn, rank: int, procs: int, spec: str, device: str, state_dir: str | None, config: EngineConfig,
           dtype: str | None, logs, level: int, env: dict[str, str], listen: tuple[str, bytes] | None = None) -> None:
    """An engine process: build the engine, say hello, then answer calls until shutdown or the pipe closes.
    env: variables set before anything else (the MPS daemon's pipe folder: read at the first CUDA call).

    listen: (Unix socket path, authkey): also take connections there (front processes, attach.py), each served as
    the parent's pipe is (a hello first; answers go back on the connection the call came on), except that only
    the parent may shut the engine down."""
    os.environ.update(env)
    # Ctrl-C and SIGTERM reach every process of the group (a terminal, systemd): the server process drains and
    # then shuts the engines down; an engine that died at the signal would lose what the drain should keep
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(logs)]
    root.setLevel(level)

    def link(conn, name: str,
             sender: _SharedSender | None = None) -> tuple[_Outbox, Callable[[int, bool, object], None]]:
        """A connection's outbox (sending on its own thread, or on `sender`'s), and the function that answers a
        call on it."""
        def unsent(batch: list, error: Exception, broken: bool) -> None:
            if broken:
                return  # the other end is gone: nothing to answer
            for n, _, _ in batch:  # an answer that does not pickle says so instead
                outbox.put((n, False, Unavailable(f"engine process {rank} could not send its answer: {error!r}")))

        outbox = _Outbox(conn, name, on_error=unsent, sender=sender)

        def answer(n: int, ok: bool, value) -> None:
            if not ok and not _portable(value):  # an error the server could not rebuild would lose its link
                value = RuntimeError(f"{type(value).__name__}: {value}")
            outbox.put((n, ok, value))

        return outbox, answer

    outbox, answer = link(conn, f"streamret-engine-{rank}-send")

    # Several engines share the host's cores: the tokenizer works on each tokenize thread without the GIL and
    # without its own thread pool (a pool per process, idle workers spinning, cost as much CPU as the work), and
    # torch's host threads are split between the engines
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        _switch_interval_from_env()
        import torch

        from .engine import Engine

        torch.set_num_threads(max(1, _cores() // procs))
        engine = Engine.from_model(spec, device, state_dir, _share(config, procs, device), dtype)
        listener = _listen(listen[0]) if listen is not None else None  # (bound before the hello: fronts find it)
        # with connections to take, one thread may read them all (reader.py); without, the pipe is read as ever
        reader = engine_reader()  # (a bad value fails the start, fronts or not)
        shared = SharedReader() if listener is not None and reader != "per_connection" else None
        # the fronts' connections only: the owner's outbox was made before (it carries a failed start's error)
        sender = _SharedSender(f"streamret-engine-{rank}-send-fronts") if (
            listener is not None and reader == "shared_send") else None
    except BaseException as e:  # noqa: BLE001  (the parent raises it; the traceback stays here, so log it)
        log.error("engine process %d could not start", rank, exc_info=True)
        answer(0, False, e)
        outbox.close()
        return
    gc_pauses.freeze_startup()  # this process serves until shutdown: its model and tokenizer stay
    param = next(engine.model.parameters())
    hello = {"fingerprint": engine.fingerprint, "embed_dim": engine.embed_dim, "pid": os.getpid(),
             "reader": reader if listener is not None else "per_connection",
             "model_info": {"tokenizer": type(engine.tokenizer).__name__,
                            "dtype": str(param.dtype).removeprefix("torch."), "device": str(param.device)}}
    answer(0, True, hello)
    pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix=f"streamret-engine-{rank}-call")
    # a batch's sub-batches hold a thread for their whole run: on threads of their own, so that the short calls
    # (open, close, embedding, a batch's cancel) never wait behind them; more than these wait their turn
    batches = ThreadPoolExecutor(max_workers=16, thread_name_prefix=f"streamret-engine-{rank}-batch")

    def run(answer, n: int, op: str, args: tuple) -> None:
        try:
            if op == "import_fork":  # the other half of a fork between engines
                value = engine._import(args[0], args[1], fork_of=args[2])
            elif op in ("embed_documents", "cancel_documents"):  # a batch's rows, run here (batch/sub_batches.py)
                from ..batch import sub_batches

                value = getattr(sub_batches, op)(engine, *args)
            else:
                value = getattr(engine, op)(*args)
        except BaseException as e:  # noqa: BLE001  (the caller raises it)
            if not isinstance(e, StreamRetError):  # a bug: its traceback stays here, so log it
                log.error("engine process %d: %s failed", rank, op, exc_info=True)
            answer(n, False, e)
        else:
            answer(n, True, value)

    exit_code = 0
    parent = os.getppid()

    def parent_alive() -> bool:
        return os.getppid() == parent

    def acked(answer, n: int, f: Future) -> None:
        try:
            answer(n, True, f.result())
        except BaseException as e:  # noqa: BLE001  (the caller raises it)
            answer(n, False, e)

    def submit(answer, calls: list[tuple[int, tuple]]) -> None:
        """Chunks (call number, submit_append's args), in order, with one take of the engine lock."""
        try:
            outcomes = engine.submit_appends([args for _, args in calls])
        except BaseException as e:  # noqa: BLE001  (a bug: logged once, and every chunk of the batch says so)
            log.error("engine process %d: submit_appends failed", rank, exc_info=True)
            for n, _ in calls:
                answer(n, False, e)
            return
        for (n, _), outcome in zip(calls, outcomes):
            if isinstance(outcome, Future):
                outcome.add_done_callback(functools.partial(acked, answer, n))
                continue
            if not isinstance(outcome, StreamRetError):
                log.error("engine process %d: submit_append failed", rank, exc_info=outcome)
            answer(n, False, outcome)

    # A chunk of a stream that is in memory nowhere would read its record on this thread, holding up every
    # other call of this engine behind a storage read: such a stream's chunks go to a lane of their own, in
    # order, on a pool thread, until it is loaded (a lane is per stream, whichever connection its chunks came on)
    lanes: dict[str, deque] = {}
    lanes_lock = threading.Lock()

    def cold(stream_id) -> bool:
        store = engine.store
        return (engine.durable is not None and isinstance(stream_id, str) and stream_id not in store.streams
                and stream_id not in store.leaving)

    def drain(stream_id: str) -> None:
        while True:
            with lanes_lock:
                lane = lanes[stream_id]
                if not lane:
                    del lanes[stream_id]
                    return
                answer, n, args = lane.popleft()
            submit(answer, [(n, args)])

    def handle(answer, owner: bool, batch: list) -> str | None:
        """One batch of calls received on a connection, on the thread that read it: "broken" (the engine's step
        loop died: nothing done), "shutdown" (the owner's, answered: the calls before it done), else None.
        "broken" ends what reads the connection: its own thread (the next call on the owner's pipe ends the
        process), or the shared reader (the process leaves at once, to be started again)."""
        if engine._broken is not None:
            return "broken"
        chunks: list[tuple[int, tuple]] = []  # the batch's chunks so far, submitted together (one lock take)
        for n, op, args in batch:
            if not owner and op not in _ATTACHED_OPS:  # a front process ends its connection instead of a shutdown
                answer(n, False, FailedPrecondition(
                    f"{op!r} is for the server that started engine process {rank}, not a front attached to it"))
                continue
            if op not in _INLINE and chunks:  # the calls before it go first
                submit(answer, chunks)
                chunks = []
            if op == "shutdown":
                try:
                    answer(n, True, engine.shutdown(*args))
                except BaseException as e:  # noqa: BLE001
                    answer(n, False, e)
                return "shutdown"
            if op in _INLINE:  # in arrival order, on this thread: a stream's chunks stay in order
                stream_id, start = args[0], False
                with lanes_lock:
                    lane = lanes.get(stream_id) if isinstance(stream_id, str) else None
                    if lane is None and cold(stream_id):
                        lane = lanes[stream_id] = deque()
                        start = True
                    if lane is not None:  # behind its earlier chunks, still loading
                        lane.append((answer, n, args))
                if lane is None:
                    chunks.append((n, args))
                elif start:  # the chunks before it go first (its own earlier ones among them), then its lane
                    if chunks:
                        submit(answer, chunks)
                        chunks = []
                    pool.submit(drain, stream_id)
            else:
                (batches if op == "embed_documents" else pool).submit(run, answer, n, op, args)
        if chunks:
            submit(answer, chunks)
        return None

    def serve_calls(conn, answer, owner: bool) -> str:
        """Answer a connection's calls on this thread until it closes ("eof") or handle says otherwise."""
        while True:
            try:
                batch = conn.recv()
            except (EOFError, OSError):
                return "eof"
            how = handle(answer, owner, batch)
            if how is not None:
                return how

    def attach(conn, number: int) -> tuple[_Outbox, Callable[[int, bool, object], None]]:
        """An admitted front's connection: its outbox and answer, its hello sent."""
        attached_outbox, attached_answer = link(conn, f"streamret-engine-{rank}-a{number}-send", sender)
        attached_answer(0, True, hello)
        return attached_outbox, attached_answer

    def hang_up(attached_outbox: _Outbox, conn) -> None:
        attached_outbox.close()
        conn.close()

    def serve_attached(conn, number: int) -> None:
        """A front's connection read on a thread of its own (STREAMRET_ENGINE_READER=per_connection)."""
        attached_outbox, attached_answer = attach(conn, number)
        try:
            serve_calls(conn, attached_answer, owner=False)
        except RuntimeError:  # the pools are shut down: this engine is stopping
            pass
        finally:
            hang_up(attached_outbox, conn)

    def read_attached(conn, number: int) -> None:
        """A front's connection handed to the shared reader (STREAMRET_ENGINE_READER=shared): its end is closed
        on a thread of its own (the outbox's close waits for its sender), not on the reader's."""
        attached_outbox, attached_answer = attach(conn, number)

        def ended() -> None:
            threading.Thread(target=hang_up, args=(attached_outbox, conn), daemon=True,
                             name=f"streamret-engine-{rank}-a{number}-hang-up").start()

        shared.add(conn, functools.partial(handle, attached_answer, False), ended)

    if listener is not None:
        serve = serve_attached if shared is None else read_attached
        threading.Thread(target=_accept, args=(listener, listen[1], serve, rank),
                         name=f"streamret-engine-{rank}-accept", daemon=True).start()
    try:
        if shared is None:
            how = serve_calls(conn, answer, owner=True)
        else:  # the owner's pipe on the shared reader too: this thread reads every connection
            shared.add(conn, functools.partial(handle, answer, True), lambda: "eof")
            how = shared.run()
        if how == "eof":  # the parent died: keep what is applied, as a shutdown at exit does
            engine.shutdown(timeout_s=0.0)
        elif how == "broken":  # its step loop died: leave, so that the server starts a new one
            log.error("engine process %d: the step loop stopped; exiting to be started again", rank)
            engine.shutdown(timeout_s=0.0)
            exit_code = 1
    finally:
        if listener is not None:
            listener.close()
        pool.shutdown(wait=True)
        batches.shutdown(wait=True)
        outbox.close()
        conn.close()
    # The engine is shut down (records written, writer drained): leave without the interpreter's teardown,
    # where native threads (torch's, the tokenizer's) have hung or aborted an exiting process; the logs
    # queue is flushed first
    logging.shutdown()
    logs.close()
    logs.join_thread() if parent_alive() else logs.cancel_join_thread()
    os._exit(exit_code)


def _listen(path: str):
    """A Unix socket listener at `path` (a file left by an engine process that was there before is removed).
    Without multiprocessing's authkey: its accept() would check the key inline, and one connection that says
    nothing would hold up every later one; each connection proves the key on its own thread (_admit)."""
    from multiprocessing.connection import Listener

    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return Listener(path, family="AF_UNIX")


def _accept(listener, authkey: bytes, serve: Callable[[object, int], None], rank: int) -> None:
    """Take connections until the listener closes, each admitted (_admit) on a thread of its own, then handed to
    `serve` there (which serves it on that thread, or hands it to the shared reader and returns)."""

    def admit_and_serve(conn, number: int) -> None:
        if _admit(conn, authkey, rank):
            serve(conn, number)

    for number in itertools.count(1):
        try:
            conn = listener.accept()
        except OSError as e:
            if getattr(listener, "_listener", None) is None:  # closed (Listener.close): this engine is stopping
                return
            log.warning("engine process %d could not take a connection: %r", rank, e)  # e.g. out of descriptors
            time.sleep(0.1)
            continue
        threading.Thread(target=admit_and_serve, args=(conn, number),
                         name=f"streamret-engine-{rank}-a{number}-read", daemon=True).start()


def _admit(conn, authkey: bytes, rank: int, timeout_s: float = ADMIT_TIMEOUT_S) -> bool:
    """The connection proves that it knows the key and learns that this end does (multiprocessing's challenge,
    both ways, as Listener(authkey=...) does it) within timeout_s; False (the connection closed) otherwise."""
    import socket
    from multiprocessing.connection import answer_challenge, deliver_challenge

    sock = socket.socket(fileno=os.dup(conn.fileno()))
    timer = threading.Timer(timeout_s, sock.shutdown, (socket.SHUT_RDWR,))  # wakes a read that waits for nothing
    timer.start()
    try:
        deliver_challenge(conn, authkey)
        answer_challenge(conn, authkey)
        return True
    except (AuthenticationError, EOFError, OSError) as e:  # a stranger, or one that hung up or said nothing
        log.warning("engine process %d refused a connection: %r", rank, e)
        conn.close()
        return False
    finally:
        timer.cancel()
        sock.close()


def _share(config: EngineConfig, procs: int, device: str) -> EngineConfig:
    """This engine's share of the memory budgets that would otherwise each take the whole device or host."""
    if procs == 1:
        return config
    changes = {"host_state_bytes": config.host_state_bytes // procs}
    if config.device_state_bytes is None:
        import torch

        from ..model.spec import resolve_device

        dev = resolve_device(device)
        if dev.type == "cuda":  # an engine alone takes half the free memory: the engines share that half,
            # counted against the device's total, so that an engine started again later (its siblings' shares
            # taken by then) gets as much as the first time
            free, total = torch.cuda.mem_get_info(dev)
            changes["device_state_bytes"] = min(free, total // 2) // procs
    return replace(config, **changes)


def _nbytes(data) -> int:
    """The bytes a chunk counts for against the queue bounds (the engine's count; a str it cannot encode
    fails there, with its own error)."""
    if isinstance(data, str):
        return len(data.encode("utf-8", "surrogatepass"))
    return len(data) if isinstance(data, bytes) else 0  # (bytearray and memoryview are made bytes before)


def _portable(e: BaseException) -> bool:
    """The error survives the trip to the server's process (pickled here, rebuilt there)."""
    try:
        pickle.loads(pickle.dumps(e))
    except Exception:  # noqa: BLE001
        return False
    return True
