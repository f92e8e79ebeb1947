"""The gRPC server: StreamRet and Batch on one grpc.aio server, with health, reflection, metrics,
housekeeping (health from the durable store, idle eviction) and a graceful drain on SIGTERM.

    server = StreamRetServer(engine, ServerConfig(port=0))
    port = await server.start()
    ...
    await server.stop()        # NOT_SERVING, refuse new calls, finish running ones, checkpoint_all
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import signal
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ..engine.api import EngineAPI
from ..engine.config import Checkpoint
from ..gc_pauses import freeze_startup
from ..grpc_transport import server_options
from .auth import Authenticator
from .batch_servicer import BatchServicer
from .gate import Gate
from .heap import HeapTrimmer, return_large_buffers_to_the_os
from .limits import ServiceLimits
from .metrics import ServiceMetrics
from .parsing import register
from .proto_gen import streamret_pb2 as pb
from .proto_gen import streamret_pb2_grpc as pb_grpc
from .stream_servicer import StreamRetServicer
from .tenant_engine import TenantEngine

log = logging.getLogger("streamret.service")

SERVICE_NAMES = tuple(pb.DESCRIPTOR.services_by_name[s].full_name for s in ("StreamRet", "Batch"))


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 50051  # 0: any free port (start() returns it)
    auth_tokens: str | None = None  # token file (see auth.py for the format); None: no auth, loopback only
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None  # mutual TLS: clients must present a certificate this CA signed
    insecure_bind: bool = False  # allow a non-loopback host without auth tokens
    metrics_port: int | None = None  # Prometheus /metrics on metrics_host; None: off, 0: any free port
    http_port: int | None = None  # HTTP front end (service/http.py) on `host`; None: off, 0: any free port
    model_name: str = "default"  # the model's name on the HTTP API (`model` of /v1/embeddings, /info)
    metrics_host: str = "127.0.0.1"  # /metrics has no auth: bind it wider only where a trusted network guards it
    limits: ServiceLimits = field(default_factory=ServiceLimits)
    drain_timeout_s: float = 30.0
    rpc_threads: int = 32  # threads for blocking engine calls
    poll_s: float = 0.5  # how often health asks whether the durable store takes writes (metrics: on scrape)

    def check(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("TLS needs both --tls-cert and --tls-key")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError(f"--tls-client-ca {self.tls_client_ca} verifies client certificates over TLS: add "
                             "--tls-cert and --tls-key (the server's own certificate)")
        if self.metrics_port is not None and not (0 <= self.metrics_port <= 65535):
            raise ValueError(f"--metrics-port {self.metrics_port} is not a port; use 0..65535 (0 picks a free one)")
        if self.metrics_port is not None and not self.metrics_host.strip():
            raise ValueError("--metrics-host is empty; give an address to bind /metrics to, e.g. 127.0.0.1")
        if self.auth_tokens is None and not self.insecure_bind and not _is_loopback(self.host):
            raise ValueError(f"refusing to serve on {self.host} without --auth-tokens: anyone who can reach it "
                             "could read and write every stream; add --auth-tokens FILE, bind to 127.0.0.1, "
                             "or pass --insecure-bind if a trusted network guards the port")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


class StreamRetServer:
    def __init__(self, engine: EngineAPI, config: ServerConfig | None = None):
        self.config = config or ServerConfig()
        self.config.check()
        self.engine = engine
        auth = Authenticator.from_file(self.config.auth_tokens) if self.config.auth_tokens else Authenticator()
        self.metrics = ServiceMetrics()
        self.heap = HeapTrimmer()
        self.gate = Gate(auth, self.metrics, self.config.limits.max_calls_per_tenant,
                         on_call_end=self.heap.call_ended)
        self.streams = TenantEngine(engine, self.config.limits, self.metrics, threads=self.config.rpc_threads,
                                    batch_threads=self.config.limits.batch_threads)
        self.metrics.watch_engine(engine, lambda: len(self.streams.registry))
        self.health = health.aio.HealthServicer()
        self.port: int | None = None
        self.metrics_port: int | None = None
        self.http_port: int | None = None
        self.serving = True  # False while the durable store refuses writes (health NOT_SERVING)
        self._http = None  # the HTTP front end, when config.http_port is set
        self.stream_servicer: StreamRetServicer | None = None  # once started
        self._server: grpc.aio.Server | None = None
        self._tasks: list[asyncio.Task] = []
        self._stopped = asyncio.Event()
        # drained alongside this server's calls, before the checkpoint: the other front processes (fronts.py)
        self.drain_also: Callable[[float], Awaitable[bool]] | None = None

    async def start(self) -> int:
        """Bind and start serving; return the bound port."""
        cfg = self.config
        return_large_buffers_to_the_os()
        self.heap.start()
        size = cfg.limits.max_message_bytes
        server = grpc.aio.server(interceptors=[self.metrics.grpc],
                                 options=server_options(size, cfg.limits.max_pending_calls))
        self.stream_servicer = StreamRetServicer(self.streams, self.gate, cfg.model_name)
        register(pb_grpc.add_StreamRetServicer_to_server, self.stream_servicer, server, on_message=self.heap.saw)
        register(pb_grpc.add_BatchServicer_to_server, BatchServicer(self.streams, self.gate), server,
                 on_message=self.heap.saw)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection((*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)

        address = _address(cfg.host, cfg.port)
        if cfg.tls_cert:
            client_ca = Path(cfg.tls_client_ca).read_bytes() if cfg.tls_client_ca else None
            creds = grpc.ssl_server_credentials([(Path(cfg.tls_key).read_bytes(), Path(cfg.tls_cert).read_bytes())],
                                                root_certificates=client_ca, require_client_auth=client_ca is not None)
            self.port = server.add_secure_port(address, creds)
        else:
            self.port = server.add_insecure_port(address)
        if not self.port:
            raise OSError(f"cannot bind {address}")
        await server.start()
        self._server = server
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if cfg.http_port is not None:
            await self._start_http()
        if cfg.metrics_port is not None:
            try:
                self.metrics_port = self.metrics.serve_http(cfg.metrics_port, cfg.metrics_host)
            except BaseException:
                await self._server.stop(grace=None)
                if self._http is not None:
                    await self._http.stop()
                raise
            if hasattr(self.engine, "exports_metrics"):  # a cluster gateway: take a share of the workers' metrics
                self.engine.exports_metrics = True
        self._tasks = [asyncio.create_task(self._watch_durable()), asyncio.create_task(self._evict_idle())]
        transport = ("mutual TLS" if cfg.tls_client_ca else "TLS") if cfg.tls_cert else "plaintext"
        log.info("streamret serving on %s (%s, %s)%s", _address(cfg.host, self.port), transport,
                 "auth tokens" if cfg.auth_tokens else "no auth",
                 f", metrics on {self.metrics_url}" if self.metrics_port is not None else "")
        return self.port

    def recent_chunk_times(self) -> dict[str, list[tuple[str, int, float]]]:
        """The last Append chunks' stamps in this server, by stage (service/ack_legs.py): the handler's, the engine
        processes' pipe stamps (ShardedEngine) and the engine's own (its stats' recent_items). For benches: it asks
        the engine for its stats, too heavy for every metrics scrape."""
        from ..rings import snapshot
        from .ack_legs import engine_stages

        acks = snapshot(self.stream_servicer.recent_acks) if self.stream_servicer is not None else []
        out = {"server_read": [(sid, seq, read) for sid, seq, read, _, _ in acks],
               "ack_writing": [(sid, seq, writing) for sid, seq, _, writing, _ in acks],
               "ack_written": [(sid, seq, written) for sid, seq, _, _, written in acks]}
        if hasattr(self.engine, "recent_chunk_times"):
            out.update(self.engine.recent_chunk_times())
        out.update(engine_stages(self.engine.stats().get("recent_items") or []))
        return out

    @property
    def metrics_url(self) -> str | None:
        """http://HOST:PORT/metrics once serving metrics, else None."""
        if self.metrics_port is None:
            return None
        return f"http://{_address(self.config.metrics_host, self.metrics_port)}/metrics"

    async def _start_http(self) -> None:
        cfg = self.config
        try:
            from .http import HttpFrontEnd, ssl_context
        except ImportError as e:
            await self._server.stop(grace=None)
            raise ImportError(f"--http-port needs aiohttp ({e}); install it with pip install 'streamret[server]'") \
                from None
        self._http = HttpFrontEnd(self.gate, self.streams, model_name=cfg.model_name, serving=lambda: self.serving)
        tls = ssl_context(cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca) if cfg.tls_cert else None
        try:
            self.http_port = await self._http.start(cfg.host, cfg.http_port, tls)
        except BaseException:
            await self._server.stop(grace=None)
            raise
        log.info("HTTP (OpenAI-compatible /v1/embeddings, /health, /info) on %s://%s",
                 "https" if tls else "http", _address(cfg.host, self.http_port))

    async def stop(self) -> bool:
        """Drain: NOT_SERVING, new calls UNAVAILABLE, running calls finish (Append calls stop taking chunks
        and answer those taken), every state made durable, all within drain_timeout_s: chunks still queued
        when it runs out are not applied (their acks fail as UNAVAILABLE, retryable, and clients resend them
        from the stream's durable_seq + 1), and the engine stops. The last log line says what is durable and
        what is not. True when nothing had to be cut off."""
        if self._server is None or self._stopped.is_set():
            await self._stopped.wait()
            return True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.drain_timeout_s
        log.info("draining: finishing %d running calls", self.gate.in_flight)
        await self.health.enter_graceful_shutdown()
        others = None if self.drain_also is None else asyncio.ensure_future(
            self.drain_also(self.config.drain_timeout_s))
        clean = await self.gate.drain(self.config.drain_timeout_s)
        if others is not None:
            clean = await others and clean
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        left = max(0.0, deadline - loop.time())
        report = await loop.run_in_executor(None, functools.partial(self.engine.checkpoint_all, left))
        await self._server.stop(grace=0.5)
        if self._http is not None:
            await self._http.stop()
        if getattr(self.engine, "exports_metrics", False):  # a cluster gateway: its share goes to the others
            self.engine.exports_metrics = False
        self.metrics.stop_http()
        self.streams.shutdown()
        self.heap.stop()
        self._stopped.set()
        if isinstance(report, Checkpoint):
            log.log(logging.INFO if report.everything_durable else logging.WARNING, "stopped; %s",
                    report.describe(f"within the drain timeout ({self.config.drain_timeout_s:g} s)"))
            clean = clean and not report.dropped_chunks
        elif report is None:  # a front process (fronts.py): the engines' checkpoint is front 0's
            log.info("stopped; the engine processes' checkpoint is the first front's, after every front drained")
        else:  # a cluster gateway whose workers did not all report: their own logs say what is durable
            log.warning("stopped; not every cluster worker reported its checkpoint: their logs say what is durable")
        return clean

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def _watch_durable(self) -> None:
        """Health: NOT_SERVING while the durable store refuses writes (an ack that needs a record cannot be
        given then), SERVING again once a probe write succeeds. (A cluster gateway's engine answers None: each
        worker's acks carry its own store's failures.)"""
        loop = asyncio.get_running_loop()
        serving = True
        while True:
            try:
                writable = await loop.run_in_executor(None, self.engine.durable_writable) is not False
                if writable != serving:
                    serving = self.serving = writable
                    status = health_pb2.HealthCheckResponse.SERVING if serving else \
                        health_pb2.HealthCheckResponse.NOT_SERVING
                    for name in ("", *SERVICE_NAMES):
                        await self.health.set(name, status)
                    if serving:
                        log.warning("the durable store takes writes again: serving")
                    else:
                        log.error("the durable store refuses writes: health is NOT_SERVING until it takes them")
            except Exception:  # noqa: BLE001  (a failed probe must never take the server down)
                log.exception("asking the engine whether the durable store takes writes failed")
            await asyncio.sleep(self.config.poll_s)

    async def _evict_idle(self) -> None:
        idle_s = self.config.limits.idle_evict_s
        if not idle_s:
            return
        while True:
            await asyncio.sleep(min(idle_s / 4, 30.0))
            try:
                n = await self.streams.evict_idle()
                if n:
                    log.info("evicted %d idle streams to the durable store", n)
            except Exception:  # noqa: BLE001
                log.exception("idle eviction failed")


async def serve(engine: EngineAPI, config: ServerConfig, *, on_started=None, fronts=None) -> bool:
    """Run a server until SIGTERM or SIGINT (or, for a cluster gateway, until the cluster is stopped), then
    drain; return True when the drain was clean.

    on_started(server) is called once the port is bound (e.g. to print the address). Once the server is up, every
    object made so far (the model, tokenizer, modules, the server's own) is kept out of later garbage collections
    (gc_pauses.freeze_startup): a full collection walks only what serving made, and holds up every ack for less.
    fronts: a FrontProcesses (fronts.py), started on the bound port before on_started and drained with this server.
    """
    server = StreamRetServer(engine, config)
    await server.start()
    freeze_startup()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if fronts is not None:
        try:
            await loop.run_in_executor(None, fronts.start, server.port)
        except BaseException:
            await server.stop()
            raise
        server.drain_also = fronts.drain
    when_cluster_stops = getattr(engine, "when_cluster_stops", None)  # a ClusterEngine (streamret/cluster)
    if when_cluster_stops is not None:
        when_cluster_stops(lambda: loop.call_soon_threadsafe(stop.set))
    if on_started is not None:  # after the handlers: a SIGTERM sent as soon as the address shows still drains
        on_started(server)
    await stop.wait()
    if getattr(engine, "cluster_stopped", None) is None:
        log.info("signal received")
    return await server.stop()


class BackgroundServer:
    """A server on its own event loop thread, for callers that are not async themselves (tests,
    benchmarks, notebooks): `BackgroundServer(engine, config).port`, then `.stop()`."""

    def __init__(self, engine: EngineAPI, config: ServerConfig | None = None, fronts=None):
        """fronts: a FrontProcesses (fronts.py), started on the bound port and drained with this server."""
        self.fronts = fronts
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="streamret-server", daemon=True)
        self._thread.start()
        try:
            self.server: StreamRetServer = self.call(self._make(engine, config))
            self.port = self.call(self.server.start())
            if fronts is not None:
                try:
                    fronts.start(self.port)
                except BaseException:
                    self.call(self.server.stop())
                    raise
                self.server.drain_also = fronts.drain
        except BaseException:
            self._end_loop()
            raise

    @staticmethod
    async def _make(engine: EngineAPI, config: ServerConfig | None) -> StreamRetServer:
        return StreamRetServer(engine, config)  # built on the loop it will run on

    def call(self, coro):
        """Run a coroutine on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> bool:
        """Drain and stop (see StreamRetServer.stop); True when nothing had to be cut off."""
        try:
            return self.call(self.server.stop())
        finally:
            self._end_loop()

    def _end_loop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()
            self.loop.close()
