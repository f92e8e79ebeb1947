"""Prometheus metrics on `--metrics-port` (bound to `--metrics-host`, 127.0.0.1 unless told otherwise).

Four kinds, all on the registry that /metrics serves:

- What the service measures itself as calls finish: calls by method and status, their latency, chunk
  acks by outcome, their latency, applied bytes, busy refusals (prometheus_client Counters and Histograms).
- The standard gRPC server metrics, `grpc_server_*` (grpc_metrics.py: an interceptor the server installs).
- What the engine reports, read when /metrics is scraped and never polled (`EngineCollector`): streams
  per tier, queue depth, tokens processed and steps (counters, exposed with `_total`), streams per step
  (a histogram the engine keeps). In cluster mode each worker's engine is one series set labelled
  `worker`, and each worker is exported by exactly one gateway (see `ClusterEngine.metrics_stats`), so
  summing over every gateway's /metrics counts each worker once.
- The process's own: `process_*` (CPU seconds, resident memory, open files), `python_info` and
  `python_gc_*` (prometheus_client's process, platform and GC collectors).

Each server has its own registry, so several servers (tests) can live in one process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping

import grpc
from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .grpc_metrics import GrpcServerMetrics

log = logging.getLogger("streamret.service")

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
SCRAPE_TIMEOUT_S = 5.0  # how long a scrape waits for a cluster worker's stats (Prometheus' default timeout: 10 s)


class ServiceMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.ack_latency = Histogram("streamret_ack_latency_seconds",
                                     "From reading a chunk to sending its ack", buckets=_LATENCY_BUCKETS, registry=r)
        self.rpc_latency = Histogram("streamret_rpc_seconds", "Duration of finished calls", ["method"],
                                     buckets=_LATENCY_BUCKETS, registry=r)
        self.rpcs = Counter("streamret_rpcs", "Finished calls by method and status code", ["method", "code"],
                            registry=r)
        self.chunks = Counter("streamret_chunks", "Chunk acks by outcome (applied, duplicate, error)", ["outcome"],
                              registry=r)
        self.chunk_bytes = Counter("streamret_chunk_bytes", "Payload bytes of applied chunks", registry=r)
        # each outcome's child, kept once made: labels() takes a lock and builds a key on every call
        self._chunks_by_outcome: dict[str, Counter] = {}
        self.grpc = GrpcServerMetrics(r)  # the gRPC server's interceptor
        self.busy_refusals = Counter("streamret_busy_refusals",
                                     "Chunks refused because the engine stayed full for busy_wait_s", registry=r)
        self._engine: EngineCollector | None = None
        self._http = None

    # --- what the service measures --------------------------------------------------------------

    def rpc_done(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        self.rpcs.labels(method, code.name).inc()
        self.rpc_latency.labels(method).observe(seconds)

    def chunk_acked(self, outcome: str, n_bytes: int, seconds: float) -> None:
        counter = self._chunks_by_outcome.get(outcome)
        if counter is None:
            counter = self._chunks_by_outcome[outcome] = self.chunks.labels(outcome)
        counter.inc()
        if outcome == "applied":
            self.chunk_bytes.inc(n_bytes)
        self.ack_latency.observe(seconds)

    # --- what the engine reports, read on scrape ------------------------------------------------

    def watch_engine(self, engine, streams_held: Callable[[], int]) -> None:
        """Read `engine`'s stats whenever the registry is collected (once per server)."""
        if self._engine is not None:
            raise RuntimeError("watch_engine was called twice on one ServiceMetrics; make one per server")
        self._engine = EngineCollector(engine, streams_held)
        self.registry.register(self._engine)

    # --- exposition -----------------------------------------------------------------------------

    def serve_http(self, port: int, host: str = "127.0.0.1") -> int:
        """Expose /metrics on host:port (0: any free port); return the bound port."""
        try:
            server, thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as e:
            raise OSError(f"cannot serve /metrics on {host}:{port} ({e.strerror or e}); choose another "
                          "--metrics-port (0 picks a free one) or a --metrics-host this machine has") from None
        self._http = (server, thread)
        return server.server_address[1]

    def stop_http(self) -> None:
        if self._http is not None:
            server, thread = self._http
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
            self._http = None


class EngineCollector(Collector):
    """The engine's stats as metrics, read when the registry is collected (a scrape of /metrics).

    `engine` is an `Engine` (one series set, no `worker` label) or anything with
    `metrics_stats(timeout_s) -> {worker name: stats dict, or the error's text}` (a cluster gateway:
    the workers it exports, one series set each, labelled `worker`).
    """

    def __init__(self, engine, streams_held: Callable[[], int], timeout_s: float = SCRAPE_TIMEOUT_S):
        self.engine = engine
        self.streams_held = streams_held
        self.timeout_s = timeout_s

    def _read(self) -> tuple[list[str], dict[tuple[str, ...], Mapping | str]]:
        """(label names, {label values: stats or the reason there are none})."""
        per_worker = getattr(self.engine, "metrics_stats", None)
        if per_worker is not None:
            try:
                stats = per_worker(self.timeout_s)
            except Exception as e:  # noqa: BLE001  (a scrape shows up=0, never a 500)
                log.warning("reading the cluster's stats for /metrics failed: %s", e)
                return ["worker"], {}
            return ["worker"], {(name,): s for name, s in stats.items()}
        try:
            return [], {(): self.engine.stats()}
        except Exception as e:  # noqa: BLE001
            log.warning("reading the engine's stats for /metrics failed: %s", e)
            return [], {(): f"{type(e).__name__}: {e}"}

    def describe(self) -> Iterator[Metric]:
        return iter(())  # families are only known on collect (labels depend on the engine); no name checks

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        held = GaugeMetricFamily("streamret_streams_held", "Streams held open on this server, all tenants")
        held.add_metric([], self.streams_held())
        yield held
        names, per_worker = self._read()
        up = GaugeMetricFamily("streamret_engine_up", "1 when the engine's stats were read at this scrape, else 0",
                               labels=names)
        tiers = GaugeMetricFamily("streamret_engine_streams", "Engine streams per storage tier",
                                  labels=[*names, "tier"])
        queue = GaugeMetricFamily("streamret_engine_queue_depth", "Chunks waiting in the engine", labels=names)
        queue_tokens = GaugeMetricFamily("streamret_engine_queue_tokens", "Tokens of the chunks waiting in the engine",
                                         labels=names)
        tokens = CounterMetricFamily("streamret_engine_tokens_processed",
                                     "Tokens the engine has processed since it started", labels=names)
        steps = CounterMetricFamily("streamret_engine_steps", "Model steps the engine has run since it started",
                                    labels=names)
        write_errors = CounterMetricFamily("streamret_engine_durable_write_errors",
                                           "Durable-store writes that failed", labels=names)
        batch = HistogramMetricFamily("streamret_engine_step_batch_streams", "Streams per engine step",
                                      labels=names)
        for values, stats in per_worker.items():
            labels = list(values)
            if not isinstance(stats, Mapping):
                up.add_metric(labels, 0)
                continue
            up.add_metric(labels, 1)
            for tier, n in (stats.get("streams") or {}).items():
                tiers.add_metric([*labels, tier], n)
            queue.add_metric(labels, stats.get("queue_depth", 0))
            queue_tokens.add_metric(labels, stats.get("queue_tokens", 0))
            tokens.add_metric(labels, stats.get("tokens_processed", 0))
            steps.add_metric(labels, stats.get("steps", 0))
            write_errors.add_metric(labels, stats.get("durable_write_errors", 0))
            counts = stats.get("step_streams_buckets")
            if counts:
                cumulative, buckets = 0, []
                for i, n in enumerate(counts):
                    cumulative += n
                    buckets.append((f"{float(2**i)}" if i < len(counts) - 1 else "+Inf", cumulative))
                batch.add_metric(labels, buckets, sum_value=stats.get("step_streams", 0))
        yield from (up, tiers, queue, queue_tokens, tokens, steps, write_errors, batch)
        seconds = GaugeMetricFamily("streamret_engine_scrape_seconds", "How long reading the engine's stats took "
                                    "at this scrape")
        seconds.add_metric([], time.perf_counter() - started)
        yield seconds

