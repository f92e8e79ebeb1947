"""StreamWorker: one engine inside a Ray actor, serving the streams the gateways route to it.

A plain class (Ray wraps it with `ray.remote` when the coordinator starts workers), so tests can
drive it without Ray. Every stream operation comes through `call(channel, n, op, stream_id, args)`:

- Order: Ray does not promise that an async actor runs calls in the order they were sent (a large
  argument travels through the object store and can arrive late). Each gateway numbers its calls
  per worker (`n` = 0, 1, 2 ... on its channel) and a call waits here for its predecessors to have
  started, so a stream's chunks reach the engine in the order the client sent them.
- Restarts: a channel names the worker incarnation it was opened with. After a crash and restart
  (Ray's max_restarts) calls on an old channel fail with reconnect=True: their predecessors died
  with the old process, and the client resends from durable_seq.
- Ownership: the engine's durable store is a FencedStore. Reading a stream takes it; a copy that
  another worker has taken since is dropped before use (see fenced_store.py).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from ..engine import Engine
from ..engine.config import Checkpoint
from ..errors import InvalidArgument, StreamRetError, TooBusy, Unavailable
from ..model.spec import load_model
from .fenced_store import FencedStore, StreamMoved
from .wire import Failure, WorkerSpec

ORDER_TIMEOUT_S = 30.0  # a call waits this long for its predecessor on the channel, then the channel is broken

# What `call` may run: engine methods that take a stream id first, plus the worker's own `release`.
STREAM_OPS = frozenset({"append", "open", "exists", "info", "flush", "close", "evict", "embedding", "segments",
                        "summarize", "export_state", "import_state", "fork", "release"})


def assigned_gpus() -> tuple[list[str], str | None]:
    """(the GPU ids Ray assigned to this actor, CUDA_VISIBLE_DEVICES): Ray sets the variable to those ids, so
    the first assigned GPU is cuda:0 in here. ([], ...) outside a Ray worker (tests drive the class directly)."""
    gpu_ids: list[str] = []
    try:
        import ray

        if ray.is_initialized():
            gpu_ids = [str(g) for g in ray.get_gpu_ids()]
    except ImportError:
        pass
    return gpu_ids, os.environ.get("CUDA_VISIBLE_DEVICES")


def worker_device(device: str, gpu_ids: list[str]) -> str:
    """The engine's device: with GPUs from Ray, `auto` is the first of them (cuda:0 here), and a worker
    whose CUDA does not work fails instead of serving from the CPU unnoticed."""
    if device != "auto" or not gpu_ids:
        return device
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError(f"Ray gave this worker GPU(s) {gpu_ids} (CUDA_VISIBLE_DEVICES="
                           f"{os.environ.get('CUDA_VISIBLE_DEVICES')!r}) but torch sees no CUDA device (torch "
                           f"{torch.__version__}, CUDA build {torch.version.cuda}); fix the node's driver or torch "
                           "install, or start the cluster with --gpus-per-worker 0 for CPU workers")
    return "cuda:0"


class StreamWorker:
    def __init__(self, name: str, spec: WorkerSpec):
        self.name = name
        self.incarnation = uuid.uuid4().hex[:12]
        where = f"{socket.gethostname()}:{os.getpid()}"
        self.store = FencedStore(spec.state_url, owner=f"{name} {self.incarnation} {where}")
        self.gpu_ids, self.visible_devices = assigned_gpus()
        device = worker_device(spec.device, self.gpu_ids)
        self.engine = Engine(load_model(spec.model, device, spec.dtype), config=spec.engine, durable=self.store)
        self._accept = ThreadPoolExecutor(1, thread_name_prefix="streamret-accept")  # FIFO: keeps call order
        self._pool = ThreadPoolExecutor(spec.threads, thread_name_prefix="streamret-call")
        self._next: dict[str, int] = {}  # channel -> number of the next call allowed to start
        self._turns: dict[tuple[str, int], asyncio.Event] = {}
        self._broken: set[str] = set()
        self.draining = False

    # ------------------------------------------------------------------------------------------
    # the gateway's view of this worker

    async def hello(self) -> dict:
        """Who this is (a new incarnation after each restart); gateways open their channel with it."""
        return {"name": self.name, "incarnation": self.incarnation, "host": socket.gethostname(),
                "pid": os.getpid(), "device": str(self.engine.model.device), "gpu_ids": self.gpu_ids,
                "cuda_visible_devices": self.visible_devices, "fingerprint": self.engine.fingerprint,
                "embed_dim": int(self.engine.model.config.out_embed_dim), "roles": self.engine.roles,
                "draining": self.draining}

    async def stats(self) -> dict:
        stats = await asyncio.get_running_loop().run_in_executor(self._pool, self.engine.stats)
        return {**stats, "name": self.name, "incarnation": self.incarnation, "draining": self.draining}

    async def checkpoint_all(self) -> Checkpoint:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.engine.checkpoint_all)

    async def drain(self) -> Checkpoint:
        """Take no more stream calls, apply what was accepted and make every stream durable; returns what the
        engine's checkpoint made durable.

        The streams then load on their new owners from the durable store; the coordinator stops
        this actor afterwards.
        """
        self.draining = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._accept, lambda: None)  # calls already past their turn are in the engine
        return await loop.run_in_executor(self._pool, self.engine.checkpoint_all)

    async def shutdown(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self.engine.shutdown)

    # ------------------------------------------------------------------------------------------
    # stream calls

    async def call(self, channel: str, n: int, op: str, stream_id: str, args: tuple = (), fresh: bool = False):
        """Run one stream operation in channel order; a StreamRetError comes back as a Failure value.

        fresh: the gateway routes this stream here for the first time (it moved, or the gateway is
        new), so a copy held in memory is checked against the store's owner epochs first.
        """
        if not channel.startswith(f"{self.incarnation}/"):
            return Failure.of(Unavailable(f"worker {self.name} restarted; resend from durable_seq + 1"), True)
        if op not in STREAM_OPS:
            return Failure.of(InvalidArgument(f"unknown worker operation {op!r}; use one of {sorted(STREAM_OPS)}"))
        loop = asyncio.get_running_loop()
        try:
            await self._turn(channel, n)
        except StreamRetError as e:
            return Failure.of(e, reconnect=True)
        try:  # the start of the call runs on the one accept thread, in turn order
            started = await loop.run_in_executor(self._accept, self._start, op, stream_id, args, fresh)
        except StreamRetError as e:
            return Failure.of(e)
        finally:
            self._advance(channel, n)
        try:
            if op == "append":
                return await asyncio.wrap_future(started)
            return await loop.run_in_executor(self._pool, self._run, op, stream_id, args)
        except StreamRetError as e:
            return Failure.of(e)

    def _start(self, op: str, stream_id: str, args: tuple, fresh: bool):
        """Refuse calls while draining, drop a stale copy, and queue an append in the engine."""
        if self.draining and op != "release":
            raise Unavailable(f"worker {self.name} is draining; its streams are moving, retry shortly")
        for sid in (stream_id, args[0]) if op == "fork" else (stream_id,):
            self._drop_if_stale(sid, fresh)
        if op in ("import_state", "fork"):  # they create a stream without reading the store first
            self.store.claim(args[0] if op == "fork" else stream_id)
        if op == "append":
            seq, data, flush, durable, *rest = args  # a gateway from before fairness groups sends no group
            group = rest[0] if rest else None
            return self.engine.submit_append(stream_id, seq, data, flush=flush, durable=durable, group=group)
        return None

    def _drop_if_stale(self, stream_id: str, fresh: bool) -> None:
        held = self.store.epoch(stream_id) is not None
        if stream_id in self.store.fenced or (fresh and held and not self.store.owns(stream_id)):
            self.engine.drop(stream_id)
            self.store.forget(stream_id)

    def _run(self, op: str, stream_id: str, args: tuple):
        if op == "release":
            return self._release(stream_id)
        return getattr(self.engine, op)(stream_id, *args)

    def _release(self, stream_id: str, attempts: int = 50) -> None:
        """Hand a stream over: apply its queued chunks, write it durable, free it here."""
        for _ in range(attempts):
            try:
                if self.engine.exists(stream_id):
                    self.engine.evict(stream_id)
            except TooBusy:  # chunks from another gateway arrived meanwhile: let them apply
                time.sleep(0.01)
                continue
            except StreamMoved:  # it was taken over already: this copy is stale
                self.engine.drop(stream_id)
            self.engine.durability.drain()  # records queued before the eviction are written (or refused) now
            self.store.forget(stream_id)
            return
        raise TooBusy(f"stream {stream_id!r} keeps receiving chunks on worker {self.name}; another gateway "
                      "still routes it here")

    # ------------------------------------------------------------------------------------------
    # call order per channel

    async def _turn(self, channel: str, n: int) -> None:
        if channel in self._broken:
            raise Unavailable(f"the call order to worker {self.name} broke; reconnect and resend")
        expected = self._next.setdefault(channel, 0)
        if n == expected:
            return
        if n < expected:
            raise InvalidArgument(f"call {n} on channel {channel!r} was already run (next is {expected})")
        event = self._turns[(channel, n)] = asyncio.Event()
        try:
            await asyncio.wait_for(event.wait(), ORDER_TIMEOUT_S)
        except TimeoutError:
            self._broken.add(channel)
            for (ch, _), waiting in self._turns.items():  # the calls queued behind it fail now, not one by one
                if ch == channel:
                    waiting.set()
            raise Unavailable(f"call {n} to worker {self.name} waited {ORDER_TIMEOUT_S} s for call {expected}; "
                              "reconnect and resend") from None
        finally:
            self._turns.pop((channel, n), None)
        if channel in self._broken:
            raise Unavailable(f"the call order to worker {self.name} broke; reconnect and resend")

    def _advance(self, channel: str, n: int) -> None:
        self._next[channel] = n + 1
        event = self._turns.get((channel, n + 1))
        if event is not None:
            event.set()
