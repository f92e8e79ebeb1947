"""A burst of calls while the server's event loop is busy: gRPC holds the calls until the loop takes them, up to
ServiceLimits.max_pending_calls, and answers every one of them.

gRPC's own default holds 1,000 and refuses calls at random from there (all from 3,000), with CANCELLED and no
message: that is how bench/e2e.py's 1,024 streams, opening at once on one server, got CANCELLED (issue 14).
"""

import time
from collections import Counter

import grpc
import pytest

from streamret.engine import Engine
from streamret.service.limits import ServiceLimits
from streamret.service.proto_gen import streamret_pb2 as pb
from streamret.service.proto_gen import streamret_pb2_grpc as pb_grpc
from streamret.service.server import BackgroundServer, ServerConfig

BURST = 1500  # past gRPC's default backlog of 1,000: about 60 of them would be refused there


@pytest.fixture(scope="module")
def engine():
    eng = Engine.from_model("random:tiny", "cpu")
    yield eng
    eng.shutdown()


def burst_outcomes(engine, limits: ServiceLimits, calls: int, stall_s: float = 2.0) -> Counter:
    """Stall the server's event loop, send `calls` GetModelInfo calls meanwhile, and count their outcomes by
    status name (CANCELLED with gRPC's own message "CANCELLED" is a call gRPC refused before the server saw it)."""
    server = BackgroundServer(engine, ServerConfig(port=0, limits=limits))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = pb_grpc.StreamRetStub(channel)
            stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30)  # connected before the stall
            server.loop.call_soon_threadsafe(time.sleep, stall_s)  # a long turn of the loop (a GC pause, a burst)
            futures = [stub.GetModelInfo.future(pb.GetModelInfoRequest(), timeout=60) for _ in range(calls)]
            outcomes = Counter()
            for f in futures:
                error = f.exception()
                outcomes["OK" if error is None else f"{error.code().name} {error.details()!r}"] += 1
    finally:
        server.stop()
    return outcomes


def test_a_burst_past_grpcs_default_backlog_is_answered_in_full(engine):
    outcomes = burst_outcomes(engine, ServiceLimits(idle_evict_s=0), BURST)
    assert outcomes == {"OK": BURST}, outcomes


def test_calls_past_max_pending_calls_are_refused_by_grpc(engine):
    """The limit reaches gRPC: with room for 100 waiting calls, a burst of 400 has some refused."""
    outcomes = burst_outcomes(engine, ServiceLimits(idle_evict_s=0, max_pending_calls=100), 400)
    assert outcomes["CANCELLED 'CANCELLED'"] > 0 and outcomes["OK"] >= 100, outcomes
