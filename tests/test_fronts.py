"""`streamret serve --front-procs 2`: two gRPC server processes on one port over the same engine processes
(streamret/service/fronts.py)."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from helpers_server import ServeProcess

from streamret.engine import Engine
from streamret.engine.shards import shard_of
from streamret.service.auth import DEFAULT_TENANT, Caller
from streamret.service.fronts import front_procs
from streamret.service.proto_gen import streamret_pb2 as pb
from streamret.service.proto_gen import streamret_pb2_grpc as pb_grpc

CHANNELS = 16  # each its own connection: the kernel puts each on either front (all on one: 2 in 2**16)
TEXT = "Two fronts serve this stream. It says one thing, then another, and a third thing at the end. "
SERVE_ARGS = ("--engine-procs", "2", "--front-procs", "2", "--log-level", "INFO")


def chunk(k: int) -> bytes:
    return f"Part {k}. {TEXT}".encode()


def channels(target: str, n: int = CHANNELS) -> list[pb_grpc.StreamRetStub]:
    """Stubs of n channels, each on a connection of its own (gRPC shares one per target in a process unless
    each channel keeps its own subchannels)."""
    return [pb_grpc.StreamRetStub(grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]))
            for _ in range(n)]


def append(stub: pb_grpc.StreamRetStub, sid: str, seqs: range) -> list[pb.AppendResponse]:
    return list(stub.Append(iter([pb.AppendRequest(stream_id=sid, seq=s, data=chunk(s)) for s in seqs]), timeout=60))


def read_until_ok(stub: pb_grpc.StreamRetStub, sid: str, timeout_s: float = 120.0) -> int:
    """GetEmbedding until it answers OK; how many times it answered UNAVAILABLE first (nothing else is allowed)."""
    unavailable, deadline = 0, time.monotonic() + timeout_s
    while True:
        try:
            stub.GetEmbedding(pb.GetEmbeddingRequest(stream_id=sid), timeout=60)
            return unavailable
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.UNAVAILABLE, (sid, e.code(), e.details())
            assert time.monotonic() < deadline, f"{sid}: still UNAVAILABLE after {timeout_s} s: {e.details()}"
            unavailable += 1
            time.sleep(0.1)


def front_pids(server: ServeProcess) -> list[int]:
    return [int(p) for p in server.line.split("front process pids ")[1].split()]


def engine_pids(server: ServeProcess) -> list[int]:
    """The engine processes: front 0's spawned children that are no front."""
    fronts = set(front_pids(server))
    out = []
    for pid in Path(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children").read_text().split():
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if int(pid) not in fronts and b"spawn_main" in cmdline:
            out.append(int(pid))
    return sorted(out)


def served(log: str) -> dict[int, tuple[int, dict[str, int], int]]:
    """Each front's last words: rank -> (calls, calls by status code, chunks acked)."""
    out = {}
    line = r"front process (\d+) \(pid \d+\) stopped: it answered (\d+) calls \(([^)]*)\) and acked (\d+) chunks"
    for rank, calls, codes, chunks in re.findall(line, log):
        by_code = dict((c.rsplit(" ", 1)[0], int(c.rsplit(" ", 1)[1])) for c in codes.split(", ") if c != "none")
        out[int(rank)] = (int(calls), by_code, int(chunks))
    return out


def wait_for(log, text: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in log():
        assert time.monotonic() < deadline, f"no {text!r} in the log:\n{log()}"
        time.sleep(0.2)


def test_front_procs_must_be_a_positive_int():
    assert front_procs("3") == 3
    for bad in (0, "x", 1.5):
        with pytest.raises(ValueError, match="--front-procs must be an int >= 1"):
            front_procs(bad)


def test_two_fronts_serve_one_port_and_survive_a_dead_front_and_a_dead_engine(tmp_path):
    with ServeProcess(tmp_path / "states", *SERVE_ARGS) as server:
        server.start()
        assert len(front_pids(server)) == 2
        stubs = channels(server.target)
        sids = [f"s{i}" for i in range(len(stubs))]
        # every chunk acked exactly once, in order, by whichever front the channel is on
        for stub, sid in zip(stubs, sids):
            acks = append(stub, sid, range(1, 4))
            assert [(a.seq, a.error_code, a.duplicate) for a in acks] == [(s, 0, False) for s in (1, 2, 3)]
            assert all(a.applied_seq >= a.seq for a in acks)
        # each stream read through other channels (the other front, for about half of them): the embedding of
        # one engine that read the same chunks
        with Engine.from_model("random:tiny", "cpu", dtype="float32") as plain:
            for seq in (1, 2, 3):
                plain.append("p", seq, chunk(seq))
            expected = plain.embedding("p")
        for i, sid in enumerate(sids):
            for reader in (stubs[(i + 1) % len(stubs)], stubs[(i + 7) % len(stubs)]):
                got = reader.GetEmbedding(pb.GetEmbeddingRequest(stream_id=sid), timeout=60)
                assert got.applied_seq == 3
                np.testing.assert_allclose(got.values, expected, atol=1e-5)
        # the model's embedding roles reached every front in its engines' hello: random weights, no document role
        for stub in stubs:
            with pytest.raises(grpc.RpcError) as refused:
                stub.GetEmbedding(pb.GetEmbeddingRequest(stream_id=sids[0], role=pb.EMBEDDING_ROLE_DOCUMENT),
                                  timeout=60)
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "random:tiny has none" in refused.value.details()

        # one stream's chunks 1-3 sent on every channel at once (so through both fronts): each applied once, the
        # others acked as duplicates (the engine's seq checks; the service keeps no per-stream order of its own)
        with ThreadPoolExecutor(len(stubs)) as pool:
            acks = [a for got in pool.map(lambda stub: append(stub, "both", range(1, 4)), stubs) for a in got]
        assert all(a.error_code == 0 for a in acks)
        assert sorted(a.seq for a in acks if not a.duplicate) == [1, 2, 3]
        got = stubs[0].GetEmbedding(pb.GetEmbeddingRequest(stream_id="both"), timeout=60)
        assert got.applied_seq == 3
        np.testing.assert_allclose(got.values, expected, atol=1e-5)

        # a front killed: its calls fail, its clients reconnect (to the other front), and it is started again
        engines = engine_pids(server)
        assert len(engines) == 2
        os.kill(front_pids(server)[1], signal.SIGKILL)
        for stub, sid in zip(stubs, sids):
            read_until_ok(stub, sid)
        wait_for(server.log, "front process 1 is back")

        # an engine process killed: both fronts answer UNAVAILABLE for its streams, then serve them again
        fresh = channels(server.target)
        victim = next(sid for sid in sids if shard_of(Caller(DEFAULT_TENANT).engine_id(sid), 2) == 0)
        for stub in fresh:  # every channel connected before the kill
            stub.GetEmbedding(pb.GetEmbeddingRequest(stream_id=victim), timeout=60)
        os.kill(engines[0], signal.SIGKILL)
        with ThreadPoolExecutor(len(fresh)) as pool:  # all at once, while it is being started again
            assert all(n > 0 for n in pool.map(lambda stub: read_until_ok(stub, victim), fresh))
        assert fresh[0].GetEmbedding(pb.GetEmbeddingRequest(stream_id=victim), timeout=60).applied_seq == 3
        acks = append(fresh[1], victim, range(3, 5))  # 3 again: a duplicate; 4 applied
        assert [(a.seq, a.duplicate, a.error_code) for a in acks] == [(3, True, 0), (4, False, 0)]

        assert server.stop() == 0
        fronts = served(server.log())
        assert set(fronts) == {0, 1}, server.log()
        for rank, (calls, codes, _) in fronts.items():  # both served calls, and both said UNAVAILABLE for a while
            assert calls > 0 and codes.get("UNAVAILABLE", 0) > 0, (rank, fronts)



def test_sigterm_drains_every_front_and_what_they_acked_is_durable(tmp_path):
    """Append calls on both fronts when SIGTERM comes: each call ends (its chunks taken acked, then
    UNAVAILABLE), the server exits 0, and every acked chunk is in its stream's record after a restart."""
    acked: dict[str, int] = {}
    ended: dict[str, grpc.StatusCode] = {}
    stop_sending = threading.Event()

    def requests(sid: str):
        for seq in range(1, 10_000):
            if stop_sending.is_set():
                return
            yield pb.AppendRequest(stream_id=sid, seq=seq, data=chunk(seq))
            time.sleep(0.02)

    def run(stub: pb_grpc.StreamRetStub, sid: str) -> None:
        try:
            for ack in stub.Append(requests(sid), timeout=120):
                assert ack.error_code == 0 and ack.seq == acked.get(sid, 0) + 1, ack
                acked[sid] = ack.seq
            ended[sid] = grpc.StatusCode.OK
        except grpc.RpcError as e:
            ended[sid] = e.code()

    with ServeProcess(tmp_path / "states", *SERVE_ARGS) as server:
        server.start()
        stubs = channels(server.target)
        sids = [f"d{i}" for i in range(len(stubs))]
        threads = [threading.Thread(target=run, args=(stub, sid)) for stub, sid in zip(stubs, sids)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(acked) < len(sids) or min(acked.values()) < 5:
            assert time.monotonic() < deadline, f"acks so far: {acked}"
            time.sleep(0.05)
        assert server.stop() == 0
        stop_sending.set()
        for t in threads:
            t.join(timeout=60)
        assert set(ended.values()) == {grpc.StatusCode.UNAVAILABLE}, ended  # every call drained, none cut
        fronts = served(server.log())
        assert set(fronts) == {0, 1} and all(chunks > 0 for _, _, chunks in fronts.values()), fronts
        assert "every stream's applied chunks are durable" in server.log(), server.log()

    with ServeProcess(tmp_path / "states", "--engine-procs", "2") as server:  # one front reads the records
        server.start()
        stub = channels(server.target, 1)[0]
        for sid in sids:
            info = stub.OpenStream(pb.OpenStreamRequest(stream_id=sid, create_if_missing=False), timeout=60)
            assert info.durable_seq >= acked[sid], (sid, info, acked[sid])


def test_the_other_fronts_and_the_engines_exit_when_the_first_process_dies(tmp_path):
    with ServeProcess(tmp_path / "states", *SERVE_ARGS) as server:
        server.start()
        others = [*front_pids(server)[1:], *engine_pids(server)]
        assert len(others) == 3
        server.kill9()
        deadline = time.monotonic() + 60
        while alive := [pid for pid in others if _running(pid)]:
            assert time.monotonic() < deadline, f"still running 60 s after the first process died: {alive}"
            time.sleep(0.2)


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_front_started_again_during_the_drain_is_drained_too():
    """A drain that comes while a dead front is being started again: the new front is drained as it comes up
    (it was not among the fronts the drain told), and none is left serving after stop()."""
    import multiprocessing as mp

    from streamret.engine.shards import ShardedEngine
    from streamret.service.fronts import FrontProcesses
    from streamret.service.server import BackgroundServer, ServerConfig

    with ShardedEngine("random:tiny", "cpu", procs=1, listen=True) as eng:
        config = ServerConfig(port=0, drain_timeout_s=2.0)
        fronts = FrontProcesses(eng, config, 2, log_level="WARNING")
        server = BackgroundServer(eng, config, fronts=fronts)
        (old,) = fronts.pids
        os.kill(old, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not any(p.name == "streamret-front-1" and p.pid != old for p in mp.active_children()):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        server.stop()  # the new front is starting (its model loads): not serving yet
        assert not [p for p in mp.active_children() if p.name.startswith("streamret-front-")]
        assert fronts.pids == []
