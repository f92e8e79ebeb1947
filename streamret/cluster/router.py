"""ClusterEngine: the gateway's engine. It implements `EngineAPI` (streamret/engine/api.py) as `Engine` does,
served by StreamWorker actors.

The gRPC server takes it in place of an `Engine` (servicers, tenants, limits and the client are
shared with the embedded server). Each call goes to the owner of its stream: rendezvous hashing of
the engine's stream id over the live workers of the coordinator's newest view.

- A stream whose owner changed since this gateway last used it (a worker added or draining) is
  first released by its previous owner (queued chunks applied, state written durable, memory
  freed); calls that arrive meanwhile wait, appends in their order. The new owner loads it from
  the shared durable store on its first call. A previous owner that died releases nothing: the new
  one loads the last durable record, and clients resend from durable_seq.
- A worker that dies fails its calls in flight with UNAVAILABLE (the client resends from
  durable_seq); while Ray restarts it, calls to it fail fast with UNAVAILABLE; once it answers
  again this gateway opens a new channel to it (see worker.py for channels).
- Backpressure: past `max_in_flight` chunks to one worker, submit_append raises TooBusy, which the
  service turns into a wait.
- `streamret cluster stop` drains every worker, then publishes a view that says so: the gateway logs
  one line, refuses further calls with UNAVAILABLE naming the stop, and calls the callbacks given to
  `when_cluster_stops` (the server drains and exits). A coordinator that is gone for good (killed)
  stops the gateway the same way.
- Metrics: a gateway serving /metrics (`exports_metrics`) says so when it polls the coordinator, and
  exports the engine metrics of the workers it wins by rendezvous hashing of the worker's name over
  every such gateway (`metrics_stats`), each labelled `worker`: summed over all gateways, every worker
  counts once. They are read from the workers at the scrape, never polled.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

from ..engine.config import Ack, Checkpoint, StreamInfo, Summary
from ..engine.roles import ServesRoles
from ..engine.segments import Segment
from ..engine.shards import merge_stats
from ..errors import StreamRetError, TooBusy, Unavailable
from ..model.document_map import Roles
from .coordinator import View
from .rendezvous import owner
from .wire import Failure

log = logging.getLogger("streamret.cluster")


def _ray():
    import ray

    return ray


class WorkerLink:
    """This gateway's connection to one worker: its handle and the numbered channel of calls."""

    def __init__(self, name: str, handle, gateway_id: str):
        self.name = name
        self.handle = handle
        self.gateway_id = gateway_id
        self.info: dict | None = None
        self.channel: str | None = None  # None: down (not connected yet, or restarting)
        self.in_flight = 0
        self._n = 0
        self._lock = threading.Lock()
        self._reconnecting = False
        self.closed = False  # left the view
        self.dead = False  # Ray says it will not come back

    def connect(self, timeout_s: float) -> None:
        """Ask the worker who it is and open a fresh channel to that incarnation."""
        info = _ray().get(self.handle.hello.remote(), timeout=timeout_s)
        with self._lock:
            self.info = info
            self.channel = f"{info['incarnation']}/{self.gateway_id}/{uuid.uuid4().hex[:8]}"
            self._n = 0

    def send(self, op: str, stream_id: str, args: tuple = (), fresh: bool = False):
        """(ObjectRef, channel) of one call; Unavailable at once while the worker is down."""
        with self._lock:
            if self.channel is None:
                state = "gone (its streams move to other workers)" if self.dead else "restarting"
                raise Unavailable(f"worker {self.name} is {state}; retry shortly and resend from durable_seq + 1")
            ref = self.handle.call.remote(self.channel, self._n, op, stream_id, args, fresh)
            self._n += 1
            return ref, self.channel

    def lost(self, channel: str, on_dead: Callable[[str], None]) -> None:
        """The worker failed a call sent on `channel`: mark it down and reconnect in the background."""
        with self._lock:
            if self.channel != channel and self.channel is not None:
                return  # already reconnected since that call was sent
            self.channel = None
            if self._reconnecting or self.closed or self.dead:
                return
            self._reconnecting = True
        threading.Thread(target=self._reconnect, args=(on_dead,), name=f"streamret-reconnect-{self.name}",
                         daemon=True).start()

    def _reconnect(self, on_dead: Callable[[str], None]) -> None:
        ray = _ray()
        delay = 0.05
        try:
            while not self.closed:
                try:
                    self.connect(timeout_s=10.0)
                    log.info("worker %s answers again (incarnation %s)", self.name, self.info["incarnation"])
                    return
                except ray.exceptions.ActorDiedError:
                    log.warning("worker %s is dead for good", self.name)
                    self.dead = True
                    on_dead(self.name)
                    return
                except (ray.exceptions.RayError, TimeoutError):
                    time.sleep(delay)
                    delay = min(2 * delay, 1.0)
        finally:
            with self._lock:
                self._reconnecting = False


class _Move:
    """A stream being released by its previous owner; calls for it wait until `done`."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.parked: list[Callable[[], None]] = []  # appends, in arrival order


class ClusterEngine(ServesRoles):
    """EngineAPI over a Ray cluster of StreamWorkers (see the module docstring)."""

    def __init__(self, coordinator, *, gateway_id: str | None = None, call_timeout_s: float = 600.0,
                 connect_timeout_s: float = 600.0, max_in_flight: int = 4096, owns_cluster: bool = False):
        self.coordinator = coordinator
        self.gateway_id = gateway_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.call_timeout_s = call_timeout_s
        self.max_in_flight = max_in_flight
        self.owns_cluster = owns_cluster
        self._lock = threading.RLock()
        self._links: dict[str, WorkerLink] = {}
        self._live: tuple[str, ...] = ()
        self.generation = 0
        self._placement: dict[str, str] = {}  # stream -> worker this gateway last sent it to
        self._moves: dict[str, _Move] = {}
        self._fresh: set[str] = set()  # streams whose placement changed and got no call there yet
        self._stopping = threading.Event()
        self.cluster_stopped: str | None = None  # why this gateway stopped with the cluster (None: it did not)
        self.stop_report: Checkpoint | None = None  # what the cluster's stop made durable, when it says
        self._on_cluster_stop: list[Callable[[], None]] = []
        self.exports_metrics = False  # set by the server that serves this gateway's /metrics
        self._metrics_gateways: tuple[str, ...] = ()  # the gateways serving /metrics, as of the last poll
        self._apply(_ray().get(coordinator.view.remote(self.gateway_id, 0, 0.0), timeout=connect_timeout_s))
        info = next((link.info for link in self._links.values() if link.info), None)
        if info is None:
            raise Unavailable("no worker of the cluster answered; check `streamret cluster status`")
        self.fingerprint: str = info["fingerprint"]
        self.embed_dim: int = info["embed_dim"]
        # applied here: the workers return plain embeddings (a worker of a release before roles sends none)
        self.roles: Roles = info.get("roles") or Roles(None, "the cluster's workers predate embedding roles")
        self._watcher = threading.Thread(target=self._watch, name="streamret-view", daemon=True)
        self._watcher.start()

    # ------------------------------------------------------------------------------------------
    # the view

    @property
    def workers(self) -> tuple[str, ...]:
        """The live workers of the view this gateway routes by."""
        return self._live

    def worker_info(self, name: str) -> dict | None:
        """What the worker said when this gateway last connected to it (WorkerLink.connect)."""
        link = self._links.get(name)
        return None if link is None else link.info

    def when_cluster_stops(self, callback: Callable[[], None]) -> None:
        """Call `callback` (from another thread) once the cluster is stopped or its coordinator is gone."""
        with self._lock:
            if self.cluster_stopped is None:
                self._on_cluster_stop.append(callback)
                return
        callback()

    def _watch(self) -> None:
        ray = _ray()
        failing = False
        while not self._stopping.is_set():
            try:
                view = ray.get(self.coordinator.view.remote(self.gateway_id, self.generation, 5.0,
                                                            self.exports_metrics), timeout=60.0)
            except ray.exceptions.ActorDiedError:
                if not self._stopping.is_set():
                    self._cluster_gone("the cluster's coordinator is gone (the cluster was stopped or lost)", None)
                return
            except (ray.exceptions.RayError, TimeoutError) as e:
                if self._stopping.is_set():
                    return
                if not failing:  # once, not once a second: Ray restarts a coordinator that crashed
                    log.warning("the coordinator did not answer (%s); retrying until it does", e)
                failing = True
                time.sleep(1.0)
                continue
            if failing:
                log.info("the coordinator answers again")
                failing = False
            if view.stopped is not None:
                self._cluster_gone("the cluster was stopped (`streamret cluster stop`)", view.stopped)
                return
            self._metrics_gateways = view.metrics_gateways
            if view.generation != self.generation:
                self._apply(view)

    def _cluster_gone(self, why: str, report: Checkpoint | None) -> None:
        with self._lock:
            self.cluster_stopped, self.stop_report = why, report
            callbacks, self._on_cluster_stop = self._on_cluster_stop, []
            self._live = ()
        log.warning("%s; this gateway stops too", why)
        for callback in callbacks:
            try:
                callback()
            except Exception:  # noqa: BLE001
                log.exception("a callback on the cluster's stop failed")

    def _apply(self, view: View) -> None:
        """Switch to a new view; workers new to this gateway are connected before they get streams."""
        handles = {**view.draining, **view.live}
        fresh = {name: WorkerLink(name, h, self.gateway_id) for name, h in handles.items() if name not in self._links}
        for link in fresh.values():
            try:
                link.connect(timeout_s=60.0)
            except Exception as e:  # noqa: BLE001  (restarting: it joins once it answers)
                log.warning("worker %s did not answer yet (%s)", link.name, e)
                link.lost(None, self._dead)
        with self._lock:
            for name, link in self._links.items():
                if name not in handles:
                    link.closed = True
            self._links = {name: self._links.get(name) or fresh[name] for name in handles}
            self._live = tuple(sorted(view.live))
            self.generation = view.generation
        log.info("view %d: %d live workers, %d draining", view.generation, len(view.live), len(view.draining))

    def _dead(self, name: str) -> None:
        try:
            self.coordinator.report_dead.remote(name)
        except Exception:  # noqa: BLE001
            log.exception("could not report worker %s to the coordinator", name)

    # ------------------------------------------------------------------------------------------
    # routing

    def _route(self, stream_id: str) -> tuple[WorkerLink, bool, _Move | None]:
        """(owner's link, fresh, move in progress). Called with the lock held.

        fresh: nothing of this stream was sent to this owner by this gateway yet (the worker then
        checks a copy it holds against the owner epochs). A new owner starts the previous owner's
        release; calls wait for the move until it is done."""
        if self.cluster_stopped is not None:
            raise Unavailable(f"{self.cluster_stopped}: this gateway takes no more calls")
        if not self._live:
            raise Unavailable("the cluster has no live worker; retry shortly (or `streamret cluster scale N`)")
        target = owner(stream_id, self._live)
        move = self._moves.get(stream_id)
        prev = self._placement.get(stream_id)
        if prev != target:
            self._placement[stream_id] = target
            self._fresh.add(stream_id)
            if prev in self._links and move is None:  # (during a move nothing reached prev: no release)
                move = self._release(stream_id, self._links[prev])
        if move is not None and move.done.is_set():
            move = None  # released already (its callback can run inside _release)
        return self._links[target], stream_id in self._fresh, move

    def _release(self, stream_id: str, link: WorkerLink) -> _Move | None:
        try:
            ref, _ = link.send("release", stream_id)
        except Unavailable:
            return None  # the previous owner is down: nothing to hand over beyond its durable record
        move = self._moves[stream_id] = _Move()

        def released(f: Future) -> None:
            outcome = f.exception() or f.result()
            if isinstance(outcome, (BaseException, Failure)):
                log.warning("worker %s did not release a stream cleanly (%s); its new owner loads the last "
                            "durable record", link.name, outcome)
            with self._lock:
                del self._moves[stream_id]
                move.done.set()
                for send in move.parked:  # in arrival order, routed again (the view may have changed)
                    send()

        ref.future().add_done_callback(released)
        return move

    def _call(self, op: str, stream_id: str, *args):
        """A blocking call to the stream's owner."""
        while True:
            with self._lock:
                link, fresh, move = self._route(stream_id)
            if move is None:
                break
            if not move.done.wait(self.call_timeout_s):
                raise Unavailable(f"stream {stream_id!r} is still moving to worker {link.name}; retry")
        ref, channel = link.send(op, stream_id, args, fresh)
        if fresh:
            with self._lock:
                self._fresh.discard(stream_id)
        ray = _ray()
        try:
            value = ray.get(ref, timeout=self.call_timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise Unavailable(f"worker {link.name} did not answer within {self.call_timeout_s:.0f} s") from None
        except ray.exceptions.RayActorError:
            link.lost(channel, self._dead)
            raise Unavailable(f"worker {link.name} stopped during the call; retry (appends: resend from "
                              "durable_seq + 1)") from None
        return self._value(link, channel, value)

    def _value(self, link: WorkerLink, channel: str, value):
        if isinstance(value, Failure):
            if value.reconnect:
                link.lost(channel, self._dead)
            raise value.error()
        return value

    # ------------------------------------------------------------------------------------------
    # appends

    def submit_append(self, stream_id: str, seq: int, data: bytes | str, flush: bool = False,
                      durable: bool = False, group: str | None = None) -> Future:
        """Send one chunk to its stream's owner; the Future gives the worker engine's Ack. group: the
        stream's fairness group in the worker's scheduler (see Engine.open)."""
        out: Future = Future()
        with self._lock:
            self._send_append(stream_id, (seq, data, flush, durable, group), out, check_room=True)
        return out

    def append(self, stream_id: str, seq: int, data: bytes | str, flush: bool = False, durable: bool = False,
               group: str | None = None) -> Ack:
        return self.submit_append(stream_id, seq, data, flush, durable, group).result()

    def _send_append(self, stream_id: str, args: tuple, out: Future, check_room: bool = False) -> None:
        """Send now, or park behind the stream's move. Called with the lock held (keeps appends in order)."""
        link, fresh, move = self._route(stream_id)
        if move is not None:
            move.parked.append(lambda: self._send_append(stream_id, args, out))
            return
        if check_room and link.in_flight >= self.max_in_flight:
            raise TooBusy(f"worker {link.name} has {link.in_flight} chunks in flight; retry shortly")
        try:
            ref, channel = link.send("append", stream_id, args, fresh)
        except StreamRetError as e:
            out.set_exception(e)
            return
        self._fresh.discard(stream_id)
        link.in_flight += 1
        ref.future().add_done_callback(lambda f: self._landed(link, channel, f, out))

    def _landed(self, link: WorkerLink, channel: str, f: Future, out: Future) -> None:
        ray = _ray()
        with self._lock:
            link.in_flight -= 1
        try:
            out.set_result(self._value(link, channel, f.result()))
        except ray.exceptions.RayActorError:
            link.lost(channel, self._dead)
            out.set_exception(Unavailable(f"worker {link.name} stopped before the chunk was acknowledged; "
                                          "resend from durable_seq + 1"))
        except BaseException as e:  # noqa: BLE001  (delivered to whoever waits on the ack)
            out.set_exception(e)

    # ------------------------------------------------------------------------------------------
    # the rest of EngineAPI

    def open(self, stream_id: str, create_if_missing: bool = True, group: str | None = None,
             durable: bool = True) -> StreamInfo:
        return self._call("open", stream_id, create_if_missing, group, durable)

    def exists(self, stream_id: str) -> bool:
        return self._call("exists", stream_id)

    def info(self, stream_id: str) -> StreamInfo:
        return self._call("info", stream_id)

    def flush(self, stream_id: str) -> Ack:
        return self._call("flush", stream_id)

    def embedding(self, stream_id: str, role: str = "query") -> np.ndarray:
        """As Engine.embedding; the role is applied here, to the plain embedding a worker returns."""
        self.check_role(role)
        return self.as_role(self._call("embedding", stream_id), role)

    def segments(self, stream_id: str, with_embeddings: bool = True) -> list[Segment]:
        return self._call("segments", stream_id, with_embeddings)

    def summarize(self, stream_id: str, k: int = 5, mode: str = "extractive", max_new_tokens: int = 64) -> Summary:
        return self._call("summarize", stream_id, k, mode, max_new_tokens)

    def export_state(self, stream_id: str) -> bytes:
        return self._call("export_state", stream_id)

    def import_state(self, stream_id: str, data: bytes) -> StreamInfo:
        return self._call("import_state", stream_id, bytes(data))

    def fork(self, src: str, dst: str) -> StreamInfo:
        with self._lock:
            same = owner(src, self._live) == owner(dst, self._live) if self._live else True
        if same:
            return self._call("fork", src, dst)
        return self.import_state(dst, self.export_state(src))

    def close(self, stream_id: str, keep_state: bool = False) -> None:
        self._call("close", stream_id, keep_state)
        self._forget(stream_id)

    def evict(self, stream_id: str) -> None:
        self._call("evict", stream_id)
        self._forget(stream_id)

    def _forget(self, stream_id: str) -> None:
        """Nothing of the stream is left in a worker's memory: no release is needed if it moves."""
        with self._lock:
            if stream_id not in self._moves:
                self._placement.pop(stream_id, None)
                self._fresh.discard(stream_id)

    def checkpoint_all(self, timeout_s: float | None = None) -> Checkpoint | None:
        """Ask every worker to apply what it accepted and write its streams' records; wait for their answers at
        most timeout_s (default: the call timeout). The workers keep running: a worker that has not finished
        by then goes on without this gateway, and its log says what it made durable. Returns the workers'
        reports added up, or None when a worker did not answer with one (the gateway cannot say then). After the
        cluster was stopped: what the stop's drain made durable (None when the coordinator went away unsaid)."""
        if self.cluster_stopped is not None:
            return self.stop_report
        answers = self._each("checkpoint_all", timeout_s)
        missing = {name: a for name, a in answers.items() if not isinstance(a, Checkpoint)}
        if missing:
            log.warning("no checkpoint report from workers %s: %s", sorted(missing), missing)
            return None
        return Checkpoint.combine(list(answers.values()))

    def stats(self) -> dict:
        """The engines' stats added up as an engine's processes' are (`merge_stats`: counts added, histograms bucket
        by bucket, samples joined), plus each worker's answer (or its error's text) under `workers`."""
        per_worker = self._each("stats")
        total = merge_stats([stats for stats in per_worker.values() if isinstance(stats, dict)])
        total.setdefault("streams", {})
        total["workers"] = per_worker
        return total

    def durable_writable(self) -> None:
        """None: the gateway has no durable store of its own to probe; each worker's acks carry its store's failures."""
        return None

    def metrics_workers(self) -> list[str]:
        """The workers (live and draining) whose engine metrics this gateway exports: those whose name wins
        this gateway by rendezvous hashing over the gateways serving /metrics (this one included)."""
        gateways = {*self._metrics_gateways, self.gateway_id}
        with self._lock:
            names = list(self._links)
        return [name for name in names if owner(name, gateways) == self.gateway_id]

    def metrics_stats(self, timeout_s: float) -> dict:
        """{worker: its engine's stats, or the error's text} for metrics_workers(), asked now (a scrape)."""
        return self._each("stats", timeout_s, names=self.metrics_workers())

    def _each(self, method: str, timeout_s: float | None = None, names: list[str] | None = None) -> dict:
        """Call a method on every reachable worker (or those `names`); {name: result or the error's text}.
        timeout_s: how long to wait for each answer (default call_timeout_s)."""
        ray = _ray()
        with self._lock:
            links = [link for link in self._links.values() if names is None or link.name in names]
        refs = {link.name: getattr(link.handle, method).remote() for link in links}
        deadline = time.monotonic() + (self.call_timeout_s if timeout_s is None else timeout_s)
        out = {}
        for name, ref in refs.items():
            try:
                out[name] = ray.get(ref, timeout=max(0.0, deadline - time.monotonic()))
            except (ray.exceptions.RayError, TimeoutError) as e:
                out[name] = f"{type(e).__name__}: {e}"
        return out

    def shutdown(self) -> None:
        """Stop following the cluster; the gateway that started the cluster also drains and stops it."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        ray = _ray()
        try:
            ray.get(self.coordinator.leave.remote(self.gateway_id), timeout=self.call_timeout_s)
            if self.owns_cluster and self.cluster_stopped is None:  # (other gateways leave the workers running;
                # the server's drain made states durable; a stopped cluster is ended by whoever stopped it)
                ray.get(self.coordinator.stop.remote(), timeout=self.call_timeout_s)
                ray.kill(self.coordinator)
        except ray.exceptions.ActorDiedError:
            pass  # the cluster was stopped already (`streamret cluster stop`): nothing to leave
        with self._lock:
            for link in self._links.values():
                link.closed = True
