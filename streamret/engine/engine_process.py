"""An engine process: the `Engine` of one shard of the streams, answering calls on its pipe (and on the front
processes' connections), started by `ShardedEngine` (shards.py) with multiprocessing's spawn."""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import logging.handlers
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from multiprocessing import AuthenticationError

from .. import gc_pauses
from ..errors import FailedPrecondition, StreamRetError, Unavailable
from .config import EngineConfig
from .gil import switch_interval_s
from .pipe import Outbox, SharedSender, portable
from .reader import SharedReader, engine_reader

log = logging.getLogger("streamret.engine")

# calls answered at once by the engine's intake: run on the child's reader thread, in arrival order
_INLINE = frozenset({"submit_append"})
ADMIT_TIMEOUT_S = 10.0  # for a connection to an engine process's socket to prove it knows the key (_admit)
# what a connection other than the owner's (a front process: attach.py) may ask: the calls that serve a client,
# not the engine-wide ones (shutdown, checkpoint_all: its owner's, after every front drained) nor any other name
_ATTACHED_OPS = frozenset({"open", "exists", "info", "close", "evict", "fork", "import_fork", "export_state",
                           "import_state", "submit_append", "flush", "embedding", "segments", "summarize", "stats",
                           "durable_writable", "embed_documents", "cancel_documents"})


def usable_cores() -> int:
    """The cores this process may run on (a container's share, where the OS says)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


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


def serve(conn, rank: int, procs: int, spec: str, device: str, state_dir: str | None, config: EngineConfig,
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
             sender: SharedSender | None = None) -> tuple[Outbox, Callable[[int, bool, object], None]]:
        """A connection's outbox (sending on its own thread, or on `sender`'s), and the function that answers a
        call on it."""
        def unsent(batch: list, error: Exception, broken: bool) -> None:
            if broken:
                return  # the other end is gone: nothing to answer
            for n, _, _ in batch:  # an answer that does not pickle says so instead
                outbox.put((n, False, Unavailable(f"engine process {rank} could not send its answer: {error!r}")))

        outbox = Outbox(conn, name, on_error=unsent, sender=sender)

        def answer(n: int, ok: bool, value) -> None:
            if not ok and not portable(value):  # an error the server could not rebuild would lose its link
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

        torch.set_num_threads(max(1, usable_cores() // procs))
        engine = Engine.from_model(spec, device, state_dir, _share(config, procs, device), dtype)
        listener = _listen(listen[0]) if listen is not None else None  # (bound before the hello: fronts find it)
        # with connections to take, one thread may read them all (reader.py); without, the pipe is read as ever
        reader = engine_reader()  # (a bad value fails the start, fronts or not)
        shared = SharedReader() if listener is not None and reader != "per_connection" else None
        # the fronts' connections only: the owner's outbox was made before (it carries a failed start's error)
        sender = SharedSender(f"streamret-engine-{rank}-send-fronts") if (
            listener is not None and reader == "shared_send") else None
    except BaseException as e:  # noqa: BLE001  (the parent raises it; the traceback stays here, so log it)
        log.error("engine process %d could not start", rank, exc_info=True)
        answer(0, False, e)
        outbox.close()
        return
    gc_pauses.freeze_startup()  # this process serves until shutdown: its model and tokenizer stay
    param = next(engine.model.parameters())
    hello = {"fingerprint": engine.fingerprint, "embed_dim": engine.embed_dim, "roles": engine.roles,
             "pid": os.getpid(),
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

    def attach(conn, number: int) -> tuple[Outbox, Callable[[int, bool, object], None]]:
        """An admitted front's connection: its outbox and answer, its hello sent."""
        attached_outbox, attached_answer = link(conn, f"streamret-engine-{rank}-a{number}-send", sender)
        attached_answer(0, True, hello)
        return attached_outbox, attached_answer

    def hang_up(attached_outbox: Outbox, conn) -> None:
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
