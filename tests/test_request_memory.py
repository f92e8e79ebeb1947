"""A large request is given back as soon as its call ends (issue 15: huge imports).

The server's RSS under 8 MiB ImportState payloads grew by +100 to +518 MiB from run to run: each refused request
stayed alive in a reference cycle (the AbortError gRPC keeps on the call, its context the mapped error, whose
traceback holds the frames that hold the request) until the garbage collector happened to run, and the heap
that gRPC's receive buffers left free stayed in glibc's arenas. tests/test_abuse.py measures the whole server;
these tests pin each cause down in-process, where the garbage collector can be turned off.
"""

from __future__ import annotations

import gc
import threading
import time
import tracemalloc

import grpc
import pytest

from streamret.engine import Engine, EngineConfig
from streamret.service.heap import LARGE_REQUEST_BYTES, HeapTrimmer
from streamret.service.limits import ServiceLimits
from streamret.service.proto_gen import streamret_pb2 as pb
from streamret.service.proto_gen import streamret_pb2_grpc as pb_grpc
from streamret.service.server import BackgroundServer, ServerConfig

MiB = 1 << 20
PAYLOAD = 8 * MiB


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    with Engine.from_model("random:tiny", device="cpu", state_dir=str(tmp_path_factory.mktemp("states")),
                           config=EngineConfig(durable_every_chunks=0)) as eng:
        yield eng


def _stubs(port: int) -> tuple[pb_grpc.StreamRetStub, pb_grpc.BatchStub]:
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 * MiB)])
    return pb_grpc.StreamRetStub(channel), pb_grpc.BatchStub(channel)


def _code(call) -> grpc.StatusCode:
    try:
        call()
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


@pytest.mark.parametrize("rpc", ["ImportState", "EmbedTable"])
def test_refused_large_requests_are_freed_without_the_garbage_collector(engine, rpc):
    """Ten refused 8 MiB requests with the collector off: the Python memory they took is back when they end.
    Before the fix, each one's copies stayed (+224 MiB after 28 imports)."""
    srv = BackgroundServer(engine, ServerConfig(port=0))
    streams, batch = _stubs(srv.port)
    if rpc == "ImportState":
        request = pb.ImportStateRequest(stream_id="imp", state=pb.ExportStateResponse(data=b"\x07" * PAYLOAD))
        call = lambda: streams.ImportState(request, timeout=60)  # noqa: E731
    else:
        request = pb.EmbedTableRequest(arrow_ipc=b"\x07" * PAYLOAD)
        call = lambda: batch.EmbedTable(request, timeout=60)  # noqa: E731
    assert _code(call) == grpc.StatusCode.INVALID_ARGUMENT  # the channel and the server's paths warmed up
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        codes = {_code(call) for _ in range(10)}
        time.sleep(0.2)  # the last call's status is sent, then gRPC drops its request
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
        gc.enable()
        srv.stop()
    assert codes == {grpc.StatusCode.INVALID_ARGUMENT}
    assert held < PAYLOAD, f"{held / MiB:.0f} MiB still held after 10 refused {PAYLOAD // MiB} MiB {rpc} calls"


def test_imports_past_the_tenant_limit_are_refused_naming_it(engine, monkeypatch):
    """--max-imports-per-tenant 1: while one import is in work, the next is refused before its record is read
    out of the request (RESOURCE_EXHAUSTED naming the flag); once it ends, imports are taken again."""
    entered, release = threading.Event(), threading.Event()
    real = engine.import_state

    def slow_import(stream_id: str, data: bytes):
        entered.set()
        release.wait(30)
        return real(stream_id, data)

    monkeypatch.setattr(engine, "import_state", slow_import)
    srv = BackgroundServer(engine, ServerConfig(port=0, limits=ServiceLimits(max_imports_per_tenant=1)))
    streams, _ = _stubs(srv.port)
    junk = pb.ImportStateRequest(stream_id="imp", state=pb.ExportStateResponse(data=b"junk"))
    try:
        first = streams.ImportState.future(junk, timeout=60)
        assert entered.wait(30)
        with pytest.raises(grpc.RpcError) as refused:
            streams.ImportState(junk, timeout=60)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "1 state imports in work" in refused.value.details()
        assert "--max-imports-per-tenant" in refused.value.details()
        release.set()
        assert first.exception().code() == grpc.StatusCode.INVALID_ARGUMENT  # junk, refused by the engine
        assert _code(lambda: streams.ImportState(junk, timeout=60)) == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        release.set()
        srv.stop()


@pytest.mark.skipif(not HeapTrimmer().available, reason="the C library has no malloc_trim (not glibc)")
def test_the_heap_is_trimmed_after_calls_that_followed_a_large_request():
    trimmer = HeapTrimmer(settle_s=0.0, min_interval_s=0.0).start()
    try:
        trimmer.saw(LARGE_REQUEST_BYTES - 1)
        trimmer.call_ended()
        time.sleep(0.3)
        assert trimmer.trims == 0  # small requests leave nothing for the arenas to keep
        trimmer.saw(LARGE_REQUEST_BYTES)
        time.sleep(0.3)
        assert trimmer.trims == 0  # not while the large request's call runs
        trimmer.call_ended()
        deadline = time.monotonic() + 5
        while trimmer.trims == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert trimmer.trims == 1
    finally:
        trimmer.stop()
