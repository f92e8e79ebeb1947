"""Every call passes the gate: authentication, refusal while draining, in-flight accounting, the
translation of exceptions into statuses (status.py) with the client's ids in every message, and, when a
call ends, its metrics and one access-log line at INFO on the `streamret.access` logger (protocol,
method, tenant, status, duration, peer; never a text, a stream id or a token)."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from collections.abc import Callable, Iterable

import grpc

from ..errors import Unavailable
from .auth import Authenticator, Caller, scrub
from .deadlines import set_call_deadline
from .grpc_metrics import cancelled_code
from .limits import ServiceLimits, TenantCalls
from .metrics import ServiceMetrics
from .parsing import checked
from .status import status_of

log = logging.getLogger("streamret.service")
access_log = logging.getLogger("streamret.access")
UNKNOWN_TENANT = "-"  # the access log's tenant of a call refused before it was authenticated


class Gate:
    def __init__(self, auth: Authenticator, metrics: ServiceMetrics, max_calls_per_tenant: int | None = None,
                 on_call_end: Callable[[], None] | None = None):
        self.auth = auth
        self.metrics = metrics
        self.on_call_end = on_call_end  # e.g. HeapTrimmer.call_ended
        # hundreds of idle calls of one tenant would hold server memory and tasks that others need
        self.calls = TenantCalls(max_calls_per_tenant or ServiceLimits.max_calls_per_tenant, "calls",
                                 "finish or cancel some first (one Append call carries chunks of any number of "
                                 "streams), or raise the server's --max-calls-per-tenant")
        self.draining = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._on_drain: set = set()  # callbacks that make long-lived calls wind down

    def enter(self, context: grpc.aio.ServicerContext) -> Caller:
        caller = self.admit(context.invocation_metadata())
        set_call_deadline(context.time_remaining())  # the engine work of this call checks it (deadlines.py)
        return caller

    def admit(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> Caller:
        """enter() for any front end: `metadata` holds (key, value) pairs, e.g. ("authorization", "Bearer ...")."""
        if self.draining:
            raise Unavailable("the server is shutting down; retry on another server or after its restart")
        caller = self.auth.authenticate(metadata)
        self.calls.take(caller.tenant)
        self._in_flight += 1
        self._idle.clear()
        return caller

    def leave(self, caller: Caller) -> None:
        self.calls.give(caller.tenant)
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()
        if self.on_call_end is not None:
            self.on_call_end()

    def finished(self, protocol: str, method: str, code: grpc.StatusCode, started: float, caller: Caller | None,
                 peer: str | None, http_status: int | None = None) -> None:
        """A call ended (after leave()): its metrics and its access-log line. started: time.perf_counter() at
        its start."""
        seconds = time.perf_counter() - started
        self.metrics.rpc_done(method, code, seconds)
        if not access_log.isEnabledFor(logging.INFO):
            return
        tenant = caller.tenant if caller is not None else UNKNOWN_TENANT
        status = code.name if http_status is None else f"{http_status} {code.name}"
        fields = {"protocol": protocol, "method": method, "tenant": tenant, "status": code.name,
                  "duration_ms": round(seconds * 1000, 3), "peer": peer or "-"}
        if http_status is not None:
            fields["http_status"] = http_status
        access_log.info("%s %s tenant=%s status=%s %.1f ms peer=%s", protocol, method, tenant, status,
                        seconds * 1000, fields["peer"], extra={"access": fields})

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def on_drain(self, callback) -> None:
        self._on_drain.add(callback)

    def off_drain(self, callback) -> None:
        self._on_drain.discard(callback)

    async def until_drained(self, requests):
        """Yield the requests of a client stream until it ends; raise Unavailable when the server starts
        draining first (for calls with few, large messages: it costs a task per message)."""
        stop = asyncio.Event()
        self.on_drain(stop.set)
        it = aiter(requests)
        try:
            while not self.draining:
                nxt = asyncio.ensure_future(anext(it))
                drained = asyncio.ensure_future(stop.wait())
                await asyncio.wait({nxt, drained}, return_when=asyncio.FIRST_COMPLETED)
                drained.cancel()
                if not nxt.done():
                    nxt.cancel()
                    break
                try:
                    request = nxt.result()
                except StopAsyncIteration:
                    return
                yield request
        finally:
            self.off_drain(stop.set)
        raise Unavailable("the server is shutting down; send the rest to another server or after its restart")

    async def drain(self, timeout: float) -> bool:
        """Refuse new calls, ask streaming calls to wind down, wait for the rest; False on timeout."""
        self.draining = True
        for callback in list(self._on_drain):
            callback()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            log.warning("drain: %d calls still running after %.1f s", self._in_flight, timeout)
            return False


def rpc(method):
    """Decorate a servicer method `(self, caller, request, context)`: it gets the authenticated Caller,
    and any exception it raises ends the call with the mapped status and a client-safe message."""
    name = method.__name__

    def given_up(self, context, caller: Caller | None, started: float) -> None:
        """gRPC cancelled the handler: the client's deadline passed (the work not yet started is dropped with
        it, deadlines.py) or the client cancelled. Logged like any other end of a call."""
        self.gate.finished("grpc", name, cancelled_code(context), started, caller, context.peer())

    def fail(self, context, caller: Caller | None, exc: Exception, started: float) -> None:
        """End the call with exc's status by setting it, not by context.abort(): abort raises an AbortError that
        gRPC keeps on the call's state while the error's traceback holds the frames that hold the request, a
        reference cycle that kept every refused request (8 MiB ImportState payloads: +100..+500 MiB of RSS)
        alive until the garbage collector happened to run. Set, the status goes out as the handler returns."""
        code, message = status_of(exc, method=name)
        self.gate.finished("grpc", name, code, started, caller, context.peer())
        context.set_code(code)
        context.set_details(scrub(message, caller.tenant) if caller else message)

    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream_wrapper(self, request, context):
            started, caller = time.perf_counter(), None
            try:
                caller = self.gate.enter(context)
                try:
                    async for item in method(self, caller, checked(request), context):
                        yield item
                finally:
                    self.gate.leave(caller)
            except asyncio.CancelledError:
                given_up(self, context, caller, started)
                raise
            except Exception as exc:  # noqa: BLE001  (mapped to a status, never a traceback to the client)
                fail(self, context, caller, exc, started)
                return
            self.gate.finished("grpc", name, grpc.StatusCode.OK, started, caller, context.peer())

        return stream_wrapper

    @functools.wraps(method)
    async def unary_wrapper(self, request, context):
        started, caller = time.perf_counter(), None
        try:
            caller = self.gate.enter(context)
            try:
                response = await method(self, caller, checked(request), context)
            finally:
                self.gate.leave(caller)
        except asyncio.CancelledError:
            given_up(self, context, caller, started)
            raise
        except Exception as exc:  # noqa: BLE001
            fail(self, context, caller, exc, started)
            return None  # gRPC sends no response message with a status other than OK
        self.gate.finished("grpc", name, grpc.StatusCode.OK, started, caller, context.peer())
        return response

    return unary_wrapper
