"""An Append chunk's stamps, stage by stage (service/ack_legs.py): every stage is stamped, in order, and joined."""

import time

import grpc
import numpy as np
import pytest

from streamret.engine.shards import ShardedEngine
from streamret.service.ack_legs import STAGES, chunk_legs, engine_stages, summarize_legs
from streamret.service.limits import ServiceLimits
from streamret.service.proto_gen import streamret_pb2 as pb
from streamret.service.proto_gen import streamret_pb2_grpc as pb_grpc
from streamret.service.server import BackgroundServer, ServerConfig

STREAMS, CHUNKS = 4, 5


def append_stamped(port: int, sid: str) -> list[tuple[str, int, float, float, float]]:
    """One Append call of CHUNKS chunks: (sid, seq, due, sent, received) of each, as bench/service.py stamps."""
    sent: dict[int, float] = {}

    def requests():
        for seq in range(1, CHUNKS + 1):
            sent[seq] = time.monotonic()
            yield pb.AppendRequest(stream_id=sid, seq=seq, data=f"chunk {seq} of {sid} says a few words. ".encode())

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        acks = [(ack, time.monotonic()) for ack in pb_grpc.StreamRetStub(channel).Append(requests(), timeout=120)]
    assert [a.seq for a, _ in acks] == list(range(1, CHUNKS + 1)) and not any(a.error_code for a, _ in acks)
    return [(sid, a.seq, sent[a.seq], sent[a.seq], received) for a, received in acks]


@pytest.fixture(scope="module")
def stamps():
    """Every stage's stamps of STREAMS x CHUNKS chunks through a server over two engine processes."""
    with ShardedEngine("random:tiny", "cpu", procs=2) as engine:
        server = BackgroundServer(engine, ServerConfig(port=0, limits=ServiceLimits(idle_evict_s=0)))
        try:
            client = [x for s in range(STREAMS) for x in append_stamped(server.port, f"legs-{s}")]
            out = server.server.recent_chunk_times()
        finally:
            server.stop()
    out["client_due"] = [(sid, seq, due) for sid, seq, due, _, _ in client]
    out["client_sent"] = [(sid, seq, sent) for sid, seq, _, sent, _ in client]
    out["client_received"] = [(sid, seq, received) for sid, seq, _, _, received in client]
    return out


def test_every_chunk_is_stamped_at_every_stage_in_order(stamps):
    stages, keys, times = chunk_legs(stamps)
    assert stages == list(STAGES)  # none missing: with engine processes every stage stamps
    assert keys == [(f"legs-{s}", seq) for s in range(STREAMS) for seq in range(1, CHUNKS + 1)]
    # each stamp is made before the next stage can start; the client may read the ack before the server's write
    # call returns, so the last stamp is only after that write began
    upto_written = times[:, : stages.index("ack_written") + 1]
    assert (np.diff(upto_written, axis=1) >= 0).all(), np.diff(upto_written, axis=1).min(axis=0)
    assert (times[:, -1] >= times[:, stages.index("ack_writing")]).all()  # (not before its write began)


def test_the_summary_has_every_leg_and_adds_up(stamps):
    summary = summarize_legs(stamps)
    legs = [f"{a}->{b}" for a, b in zip(STAGES, STAGES[1:])]
    assert summary["chunks"] == STREAMS * CHUNKS and list(summary["legs_ms"]) == legs
    assert sum(summary["slowest"]["dominated_by"].values()) == summary["slowest"]["chunks"] == 1
    assert sum(summary["slowest"]["mean_ms"].values()) == pytest.approx(summary["total_ms"]["max"], abs=0.05)


def test_legs_join_what_every_stage_holds_and_name_the_dominant_leg():
    stamps = {"client_sent": [("a", 1, 0.0), ("a", 2, 1.0), ("b", 1, 0.0)],
              "server_read": [("t\x1fa", 1, 0.001), ("t\x1fa", 2, 1.001)],  # engine ids: read as the client's
              "ack_written": [("a", 1, 0.002), ("a", 2, 1.5)]}
    stages, keys, times = chunk_legs(stamps)
    assert stages == ["client_sent", "server_read", "ack_written"] and keys == [("a", 1), ("a", 2)]
    summary = summarize_legs(stamps, slowest=0.5)
    assert summary["slowest"]["dominated_by"] == {"server_read->ack_written": 1}
    assert summary["legs_ms"]["server_read->ack_written"]["max"] == pytest.approx(499.0)
    with pytest.raises(ValueError, match="unknown ack stages.*server_wrote"):
        chunk_legs({"server_wrote": []})


def test_engine_items_become_five_stages_and_a_flush_is_left_out():
    """An item the tokenize stage cut: accepted, cutting, cut, queued, applied; one it did not (no cutting stamps):
    three; a flush without data (no seq): none."""
    out = engine_stages([(10.0, 1000.0, 2000.0, "t\x1fs", 3, 250.0, 500.0), (11.0, 0.0, 1.0, "t\x1fs", None, 0, 0),
                         (12.0, 1000.0, 1000.0, "t\x1fs", 4, None, None)])
    assert out == {"engine_accepted": [("t\x1fs", 3, 7.0), ("t\x1fs", 4, 10.0)],
                   "engine_cutting": [("t\x1fs", 3, 7.25)], "engine_cut": [("t\x1fs", 3, 7.75)],
                   "engine_queued": [("t\x1fs", 3, 8.0), ("t\x1fs", 4, 11.0)],
                   "engine_applied": [("t\x1fs", 3, 10.0), ("t\x1fs", 4, 12.0)]}
