"""The standard gRPC server metrics, as go-grpc-prometheus (and py-grpc-prometheus) name them, so that the
usual gRPC dashboards and alerts read them unchanged:

    grpc_server_started_total{grpc_type, grpc_service, grpc_method}
    grpc_server_handled_total{grpc_type, grpc_service, grpc_method, grpc_code}
    grpc_server_handling_seconds{grpc_type, grpc_service, grpc_method}   (histogram)

for every method the server has, health and reflection included. grpc_type is unary, client_stream,
server_stream or bidi_stream; started minus handled is the calls in flight.

A server interceptor rather than grpcio's OpenTelemetry plugin: grpcio-observability pins grpcio to its own
exact version (1.84.0 needs grpcio==1.84.0) and needs opentelemetry-sdk and a Prometheus exporter on top,
none of which the GPU machines have; this needs only prometheus_client.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

# go-grpc-prometheus' default buckets, which dashboards built for it expect
HANDLING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LABELS = ("grpc_type", "grpc_service", "grpc_method")


def _rpc_type(handler: grpc.RpcMethodHandler) -> str:
    if handler.request_streaming:
        return "bidi_stream" if handler.response_streaming else "client_stream"
    return "server_stream" if handler.response_streaming else "unary"


def _split(path: str) -> tuple[str, str]:
    """'/streamret.v1.StreamRet/Append' -> ('streamret.v1.StreamRet', 'Append')."""
    service, _, method = path.lstrip("/").rpartition("/")
    return service, method


def cancelled_code(context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    """Why gRPC cancelled a handler: its deadline passed (DEADLINE_EXCEEDED) or the client went (CANCELLED)."""
    remaining = context.time_remaining()
    return grpc.StatusCode.DEADLINE_EXCEEDED if remaining is not None and remaining <= 0 else grpc.StatusCode.CANCELLED


def _final_code(context: grpc.aio.ServicerContext, error: BaseException | None) -> grpc.StatusCode:
    """The status a finished handler sent: the one it set or aborted with; OK for a plain return; CANCELLED or
    DEADLINE_EXCEEDED when gRPC cancelled it; UNKNOWN for an exception gRPC turns into one."""
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return cancelled_code(context)
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    return grpc.StatusCode.OK if error is None else grpc.StatusCode.UNKNOWN


class GrpcServerMetrics(grpc.aio.ServerInterceptor):
    def __init__(self, registry: CollectorRegistry):
        self.started = Counter("grpc_server_started", "Total number of RPCs started on the server.", _LABELS,
                               registry=registry)
        self.handled = Counter("grpc_server_handled", "Total number of RPCs completed on the server, regardless "
                               "of success or failure.", (*_LABELS, "grpc_code"), registry=registry)
        self.handling = Histogram("grpc_server_handling_seconds", "Histogram of response latency (seconds) of gRPC "
                                  "that had been application-level handled by the server.", _LABELS,
                                  buckets=HANDLING_BUCKETS, registry=registry)

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails],
                                                             Awaitable[grpc.RpcMethodHandler | None]],
                                handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:  # no such method: gRPC answers UNIMPLEMENTED itself
            return None
        labels = (_rpc_type(handler), *_split(handler_call_details.method))
        kind = ("stream" if handler.request_streaming else "unary") + "_" + (
            "stream" if handler.response_streaming else "unary")
        behavior = getattr(handler, kind)
        if inspect.isasyncgenfunction(behavior):
            wrapped = self._streaming(behavior, labels)
        elif inspect.iscoroutinefunction(behavior):
            wrapped = self._unary(behavior, labels)
        else:  # every servicer here is async; a sync one (run in a thread) would need its own wrapper
            return handler
        return handler._replace(**{kind: wrapped})

    def _start(self, labels: tuple[str, ...]) -> float:
        self.started.labels(*labels).inc()
        return time.perf_counter()

    def _finish(self, labels: tuple[str, ...], started: float, context, error: BaseException | None) -> None:
        self.handled.labels(*labels, _final_code(context, error).name).inc()
        self.handling.labels(*labels).observe(time.perf_counter() - started)

    def _unary(self, behavior, labels: tuple[str, ...]):
        async def observed(request, context):
            started, error = self._start(labels), None
            try:
                return await behavior(request, context)
            except BaseException as e:
                error = e
                raise
            finally:
                self._finish(labels, started, context, error)

        return observed

    def _streaming(self, behavior, labels: tuple[str, ...]):
        async def observed(request, context):
            started, error = self._start(labels), None
            try:
                async for response in behavior(request, context):
                    yield response
            except BaseException as e:
                error = e
                raise
            finally:
                self._finish(labels, started, context, error)

        return observed
