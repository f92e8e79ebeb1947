"""The coordinator: one named Ray actor that owns the worker list and changes it.

It starts StreamWorker actors, watches them (a worker whose restarts are used up is replaced), adds
and drains workers on `scale(n)`, and publishes the list as a `View` with a generation number.
Gateways long-poll `view()` and route by rendezvous hashing over `View.live`; the coordinator
routes nothing itself, so it is never on a chunk's path.

Draining a worker: it leaves `live` (gateways route its streams to their new owners and ask it to
release each one they touch), the coordinator waits until every gateway has seen that view, then
the worker applies what it accepted and writes every stream durable, and is stopped. Streams no
gateway touched meanwhile load on their new owners from that durable record.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field

from ..engine.config import Checkpoint
from .wire import WorkerResources, WorkerSpec

log = logging.getLogger("streamret.cluster")

NAMESPACE = "streamret"
COORDINATOR_NAME = "streamret-coordinator"
GATEWAY_TTL_S = 30.0  # a gateway not polling for this long no longer holds up a drain
METRICS_TTL_S = 15.0  # a gateway serving /metrics not polling for this long no longer takes a share of the workers


@dataclass(frozen=True)
class View:
    generation: int
    live: dict = field(default_factory=dict)  # worker name -> actor handle: the routing targets
    draining: dict = field(default_factory=dict)  # leaving: still asked to release streams
    # gateways serving /metrics (recently polling): each worker's metrics are exported by one of them
    metrics_gateways: tuple[str, ...] = ()
    # set once `streamret cluster stop` drained every worker: gateways stop too; what the drain made durable
    stopped: Checkpoint | None = None


class Coordinator:
    def __init__(self, spec: WorkerSpec, workers: int, resources: WorkerResources, *, monitor_s: float = 1.0,
                 drain_wait_s: float = 10.0):
        if workers < 1:
            raise ValueError(f"a cluster needs at least 1 worker, got {workers}")
        self.spec = spec
        self.resources = resources
        self.target = workers
        self.monitor_s = monitor_s
        self.drain_wait_s = drain_wait_s
        self.incarnation = uuid.uuid4().hex[:6]  # worker names stay unique across coordinator restarts
        self.live: dict[str, object] = {}
        self.draining: dict[str, object] = {}
        self.generation = time.time_ns() // 1000  # grows across coordinator restarts, so gateways see a change
        self._numbered = 0
        self._seen: dict[str, tuple[int, float]] = {}  # gateway -> (generation it applied, when)
        self._exporters: dict[str, float] = {}  # gateway serving /metrics -> when it last polled
        self._changed: asyncio.Condition | None = None
        self._scaling: asyncio.Lock | None = None
        self._up: asyncio.Future | None = None
        self._monitor: asyncio.Task | None = None
        self._stopped = False
        self._final: Checkpoint | None = None  # the stop's report, once every worker is drained

    async def _ready(self) -> None:
        """Start the first workers and the monitor once (async actors cannot await in __init__); every
        call waits for that, and fails the same way if it failed."""
        if self._up is None:
            self._up = asyncio.get_running_loop().create_future()
            self._changed, self._scaling = asyncio.Condition(), asyncio.Lock()
            try:
                async with self._scaling:
                    await self._grow(self.target)
                self._monitor = asyncio.create_task(self._watch())
                self._up.set_result(None)
            except BaseException as e:
                self._up.set_exception(e)
        await asyncio.shield(self._up)

    # ------------------------------------------------------------------------------------------
    # what gateways and the CLI call

    async def view(self, gateway: str, applied: int, timeout_s: float = 10.0, metrics: bool = False) -> View:
        """The current view once it is newer than `applied` (or after timeout_s); records what this
        gateway has applied, which a drain waits for, and whether it serves /metrics (then it takes a share
        of the workers' metrics: View.metrics_gateways)."""
        await self._ready()
        self._seen[gateway] = (applied, time.monotonic())
        if metrics:
            self._exporters[gateway] = time.monotonic()
        else:
            self._exporters.pop(gateway, None)
        async with self._changed:
            if self.generation <= applied:
                try:
                    await asyncio.wait_for(self._changed.wait_for(lambda: self.generation > applied), timeout_s)
                except TimeoutError:
                    pass
        now = time.monotonic()
        exporters = tuple(sorted(g for g, t in self._exporters.items() if now - t < METRICS_TTL_S))
        return View(self.generation, dict(self.live), dict(self.draining), exporters, self._final)

    async def scale(self, n: int) -> dict:
        """Grow or shrink to n workers (shrinking drains the newest ones); returns status()."""
        if n < 1:
            raise ValueError(f"a cluster needs at least 1 worker, got {n}; use `streamret cluster stop` to stop it")
        await self._ready()
        async with self._scaling:
            self.target = n
            if n > len(self.live):
                await self._grow(n)
            else:
                await self._drain(sorted(self.live, key=self._number)[n:])
        return await self.status()

    async def leave(self, gateway: str) -> None:
        """A gateway stops: drains no longer wait for it."""
        self._seen.pop(gateway, None)
        self._exporters.pop(gateway, None)

    async def report_dead(self, name: str) -> None:
        """A gateway's hint that a worker failed; the monitor confirms and replaces it."""
        await self._ready()
        if name in self.live:
            await self._check(name, self.live[name])

    async def status(self) -> dict:
        import ray

        await self._ready()
        workers = {}
        for state, group in (("live", self.live), ("draining", self.draining)):
            for name, handle in group.items():
                try:
                    stats = await asyncio.wait_for(handle.stats.remote(), 10.0)
                except (ray.exceptions.RayError, TimeoutError) as e:
                    stats = {"error": f"{type(e).__name__}: {e}"}
                workers[name] = {"state": state, **stats}
        now = time.monotonic()
        gateways = {g: gen for g, (gen, t) in self._seen.items() if now - t < GATEWAY_TTL_S}
        return {"generation": self.generation, "target": self.target, "workers": workers, "gateways": gateways,
                "model": self.spec.model, "state_url": self.spec.state_url,
                "resources": {"num_gpus": self.resources.num_gpus, "num_cpus": self.resources.num_cpus}}

    async def stop(self) -> dict:
        """Drain every worker (each applies what it accepted and writes its streams' records) and stop them;
        then tell the gateways: their view says `stopped`, so they drain and exit (`gateways()` lists those
        that have not left yet).

        Returns {"report": the workers' checkpoints added up, "failed": workers that could not be drained
        (their streams are durable up to their last record)}."""
        await self._ready()
        async with self._scaling:
            self._stopped = True
            reports = await self._drain(list(self.live))
        if self._monitor is not None:
            self._monitor.cancel()
        failed = sorted(name for name, r in reports.items() if not isinstance(r, Checkpoint))
        if self._final is None or reports:
            self._final = Checkpoint.combine([r for r in reports.values() if isinstance(r, Checkpoint)])
        await self._publish()
        return {"report": self._final, "failed": failed}

    async def gateways(self) -> list[str]:
        """The gateways that polled within GATEWAY_TTL_S and have not left."""
        return self._recent_gateways()

    def _recent_gateways(self) -> list[str]:
        now = time.monotonic()
        return sorted(g for g, (_, t) in self._seen.items() if now - t < GATEWAY_TTL_S)

    # ------------------------------------------------------------------------------------------
    # worker lifecycle

    def _number(self, name: str) -> int:
        return int(name.rsplit("-", 1)[1])

    async def _grow(self, n: int) -> None:
        names = []
        while len(self.live) + len(names) < n:
            self._numbered += 1
            names.append(f"streamret-worker-{self.incarnation}-{self._numbered}")
        started = await asyncio.gather(*(self._start(name) for name in names))
        for name, handle in zip(names, started):
            self.live[name] = handle
        if names:
            await self._publish()

    async def _start(self, name: str):
        import ray

        from .worker import StreamWorker

        r = self.resources
        options = dict(name=name, namespace=NAMESPACE, num_cpus=r.num_cpus, num_gpus=r.num_gpus,
                       max_restarts=r.max_restarts, max_task_retries=0)
        if r.memory_bytes:
            options["memory"] = r.memory_bytes
        handle = ray.remote(StreamWorker).options(**options).remote(name, self.spec)
        await handle.hello.remote()  # the engine is built and the model loaded: the worker can take streams
        log.info("worker %s is up", name)
        return handle

    async def _drain(self, names: list[str]) -> dict:
        """Drain and stop these workers; {name: its checkpoint report, or why there is none}."""
        import ray

        reports: dict = {}
        if not names:
            return reports
        for name in names:
            self.draining[name] = self.live.pop(name)
        await self._publish()
        await self._wait_gateways(self.generation)
        for name in names:
            handle = self.draining[name]
            try:
                reports[name] = await handle.drain.remote()
            except ray.exceptions.RayError as e:  # already dead: its streams load from their last record
                log.warning("draining worker %s failed (%s); stopping it anyway", name, e)
                reports[name] = f"{type(e).__name__}: {e}"
            ray.kill(handle, no_restart=True)
            del self.draining[name]
        await self._publish()
        return reports

    async def _wait_gateways(self, generation: int) -> None:
        """Until every recently seen gateway has applied `generation` (at most drain_wait_s)."""
        deadline = time.monotonic() + self.drain_wait_s
        while time.monotonic() < deadline:
            now = time.monotonic()
            if all(gen >= generation for gen, t in self._seen.values() if now - t < GATEWAY_TTL_S):
                return
            await asyncio.sleep(0.05)
        log.warning("not every gateway applied view %d within %.0f s; draining anyway", generation,
                    self.drain_wait_s)

    async def _publish(self) -> None:
        async with self._changed:
            self.generation += 1
            self._changed.notify_all()

    async def _watch(self) -> None:
        """Drop workers whose restarts are used up and start others, keeping `target` of them."""
        while not self._stopped:
            await asyncio.sleep(self.monitor_s)
            await asyncio.gather(*(self._check(name, h) for name, h in list(self.live.items())))
            if len(self.live) < self.target and not self._scaling.locked() and not self._stopped:
                async with self._scaling:
                    try:
                        await self._grow(self.target)
                    except Exception:  # noqa: BLE001  (e.g. no room for a worker yet: try again next round)
                        log.exception("starting a replacement worker failed")

    async def _check(self, name: str, handle) -> None:
        import ray

        try:
            await asyncio.wait_for(handle.hello.remote(), 5.0)
            return
        except ray.exceptions.ActorDiedError:
            pass
        except (ray.exceptions.RayError, TimeoutError):
            return  # restarting or busy: Ray brings it back
        if self.live.pop(name, None) is not None:
            log.warning("worker %s is dead for good; its streams move to the other workers", name)
            await self._publish()
