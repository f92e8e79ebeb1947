"""Prometheus metrics: what the service measures itself (RPCs, chunk acks and their latency) and what
it reads from the engine (streams per tier, tokens, step batch sizes), on `--metrics-port`.

Each server has its own registry, so several servers (tests) can live in one process.
"""

from __future__ import annotations

import logging
import time

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger("streamret.service")

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
_BATCH_BUCKETS = tuple(2.0**i for i in range(15))  # 1 .. 16384 streams per step


class ServiceMetrics:
    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.ack_latency = Histogram("streamret_ack_latency_seconds",
                                     "From reading a chunk to sending its ack", buckets=_LATENCY_BUCKETS, registry=r)
        self.rpc_latency = Histogram("streamret_rpc_seconds", "Duration of finished calls", ["method"],
                                     buckets=_LATENCY_BUCKETS, registry=r)
        self.rpcs = Counter("streamret_rpcs", "Finished calls by method and status code", ["method", "code"],
                            registry=r)
        self.chunks = Counter("streamret_chunks", "Chunk acks by outcome (applied, duplicate, error)", ["outcome"],
                              registry=r)
        self.chunk_bytes = Counter("streamret_chunk_bytes", "Payload bytes of applied chunks", registry=r)
        self.busy_refusals = Counter("streamret_busy_refusals",
                                     "Chunks refused because the engine stayed full for busy_wait_s", registry=r)
        self.streams_held = Gauge("streamret_streams_held", "Streams held open on this server, all tenants",
                                  registry=r)
        self.streams_by_tier = Gauge("streamret_engine_streams", "Engine streams per storage tier", ["tier"],
                                     registry=r)
        self.tokens = Gauge("streamret_engine_tokens_processed",
                            "Tokens the engine has processed since it started (a counter; use rate())", registry=r)
        self.tokens_per_s = Gauge("streamret_engine_tokens_per_second",
                                  "Tokens per second over the last poll interval", registry=r)
        self.steps = Gauge("streamret_engine_steps", "Engine steps since start (a counter; use rate())", registry=r)
        self.queue_depth = Gauge("streamret_engine_queue_depth", "Chunks waiting in the engine", registry=r)
        self.step_batch = Histogram("streamret_engine_step_batch_streams", "Streams per engine step",
                                    buckets=_BATCH_BUCKETS, registry=r)
        self._last: tuple[float, int, int] | None = None  # (time, tokens, steps) at the previous poll
        self._http = None

    # --- what the service measures --------------------------------------------------------------

    def rpc_done(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        self.rpcs.labels(method, code.name).inc()
        self.rpc_latency.labels(method).observe(seconds)

    def chunk_acked(self, outcome: str, n_bytes: int, seconds: float) -> None:
        self.chunks.labels(outcome).inc()
        if outcome == "applied":
            self.chunk_bytes.inc(n_bytes)
        self.ack_latency.observe(seconds)

    # --- what the engine reports ---------------------------------------------------------------

    def poll_engine(self, stats: dict, streams_held: int) -> None:
        """Fold one `engine.stats()` snapshot in (called every poll interval by the server)."""
        self.streams_held.set(streams_held)
        for tier, n in (stats.get("streams") or {}).items():
            self.streams_by_tier.labels(tier).set(n)
        self.queue_depth.set(stats.get("queue_depth", 0))
        now, tokens, steps = time.monotonic(), int(stats.get("tokens_processed", 0)), int(stats.get("steps", 0))
        self.tokens.set(tokens)
        self.steps.set(steps)
        if self._last is not None:
            t0, tokens0, steps0 = self._last
            if now > t0:
                self.tokens_per_s.set((tokens - tokens0) / (now - t0))
            # The engine keeps the batch sizes of its most recent steps; observe the ones that are new.
            recent = list(stats.get("recent_step_batch_sizes") or ())
            for n in recent[max(0, len(recent) - (steps - steps0)):]:
                self.step_batch.observe(n)
        self._last = (now, tokens, steps)

    # --- exposition -----------------------------------------------------------------------------

    def serve_http(self, port: int, host: str = "0.0.0.0") -> int:
        """Expose /metrics on host:port (0: any free port); return the bound port."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        self._http = (server, thread)
        return server.server_address[1]

    def stop_http(self) -> None:
        if self._http is not None:
            server, thread = self._http
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
            self._http = None
