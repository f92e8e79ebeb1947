"""Durable means durable (issue 15, item 3): when the state folder cannot be written (full, read-only), no ack
claims success for a chunk whose ack waited for its record, the error is retryable (UNAVAILABLE), the client's
`stream()` retries and then fails instead of returning as if saved, and a failed write leaves no temp file.

Tests run as root, where a read-only mode does not stop writes, so storage failures are made by patching the
calls the store makes (os.fsync for a full disk, os.replace for a read-only folder)."""

import errno
import os
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from streamret.client import Client, RetryPolicy
from streamret.engine import Engine, EngineConfig
from streamret.engine.durability import store as state_store_module
from streamret.errors import DurableWriteFailed, Unavailable
from streamret.service.proto_gen import streamret_pb2 as pb
from streamret.service.proto_gen import streamret_pb2_grpc as pb_grpc
from streamret.service.server import BackgroundServer, ServerConfig

REAL_FSYNC, REAL_REPLACE = os.fsync, os.replace
FAILURES = {
    "disk full (fsync)": ("fsync", errno.ENOSPC, "No space left on device"),
    "read-only folder (rename)": ("replace", errno.EROFS, "Read-only file system"),
}


class Storage:
    """Makes the durable store's writes fail (all of them, or the next n) and counts them."""

    def __init__(self, monkeypatch, how: str):
        self.call, self.errno, self.reason = FAILURES[how]
        self.failing = 0  # writes left to fail; -1: every one
        self.failed = 0
        self._lock = threading.Lock()
        real = REAL_FSYNC if self.call == "fsync" else REAL_REPLACE

        def patched(*args):
            with self._lock:
                fail = self.failing != 0
                if fail:
                    self.failed += 1
                    if self.failing > 0:
                        self.failing -= 1
            if fail:
                raise OSError(self.errno, self.reason)
            return real(*args)

        monkeypatch.setattr(state_store_module.os, self.call, patched)

    def fail(self, n: int = -1) -> None:
        self.failing = n

    def heal(self) -> None:
        self.failing = 0


def temp_files(root) -> list[str]:
    return [str(p) for p in Path(root).rglob("*.tmp")]


@pytest.mark.parametrize("how", sorted(FAILURES))
def test_a_failed_write_fails_the_acks_that_waited_for_it_and_leaves_no_temp_file(tmp_path, monkeypatch, how):
    storage = Storage(monkeypatch, how)
    with Engine.from_model("random:tiny", device="cpu", state_dir=str(tmp_path)) as e:  # a record per chunk
        assert e.append("s", 1, "saved first. ").durable_seq == 1
        storage.fail()
        # the policy's record and an asked-for record: neither ack may claim success
        for seq, durable in ((2, False), (3, True)):
            with pytest.raises(DurableWriteFailed) as info:
                e.append("s", seq, f"chunk {seq} is lost on a full disk. ", durable=durable)
            message = str(info.value)
            assert isinstance(info.value, Unavailable)
            assert f"chunk {seq}" in message and storage.reason in message and "durable_seq stays 1" in message
            assert str(tmp_path) not in message  # the server's paths stay in its log
        assert temp_files(tmp_path) == []
        info = e.info("s")
        assert (info.applied_seq, info.durable_seq) == (3, 1)  # applied, and honest about durability
        # the resent last chunk (a duplicate asking for a record) fails the same way while storage fails
        with pytest.raises(DurableWriteFailed):
            e.append("s", 3, "chunk 3 is lost on a full disk. ", durable=True)
        # other operations that write records say UNAVAILABLE too, and leave nothing behind
        with pytest.raises(DurableWriteFailed):
            e.import_state("copy", e.export_state("s"))
        assert not e.exists("copy")
        with pytest.raises(DurableWriteFailed):
            e.evict("s")
        assert temp_files(tmp_path) == [] and storage.failed >= 4
        assert e._broken is None
        # storage is back: resending the last chunk writes the record, acked as a duplicate
        storage.heal()
        ack = e.append("s", 3, "chunk 3 is lost on a full disk. ", durable=True)
        assert (ack.duplicate, ack.applied_seq, ack.durable_seq) == (True, 3, 3)
        emb = e.embedding("s")
    with Engine.from_model("random:tiny", device="cpu", state_dir=str(tmp_path)) as e:
        assert (e.info("s").applied_seq, e.info("s").durable_seq) == (3, 3)
        np.testing.assert_array_equal(e.embedding("s"), emb)


def test_a_write_that_fails_is_retried_by_the_next_record_and_at_shutdown(tmp_path, monkeypatch):
    storage = Storage(monkeypatch, "disk full (fsync)")
    cfg = EngineConfig(durable_every_chunks=0)  # records only when asked, and at shutdown
    with Engine.from_model("random:tiny", device="cpu", state_dir=str(tmp_path), config=cfg) as e:
        e.append("s", 1, "one ")
        storage.fail(1)
        with pytest.raises(DurableWriteFailed):
            e.append("s", 2, "two ", durable=True)
        assert e.info("s").durable_seq == 0
    # the failed record was still owed, so the shutdown's checkpoint wrote it
    with Engine.from_model("random:tiny", device="cpu", state_dir=str(tmp_path), config=cfg) as e:
        assert (e.info("s").applied_seq, e.info("s").durable_seq) == (2, 2)
    assert temp_files(tmp_path) == []


@pytest.fixture
def served(tmp_path):
    eng = Engine.from_model("random:tiny", device="cpu", state_dir=str(tmp_path),
                            config=EngineConfig(durable_every_chunks=0))
    srv = BackgroundServer(eng, ServerConfig(port=0, poll_s=0.05))
    yield srv, eng
    srv.stop()
    eng.shutdown()


def test_append_acks_carry_a_retryable_unavailable_when_the_record_is_not_written(served, monkeypatch):
    srv, eng = served
    storage = Storage(monkeypatch, "read-only folder (rename)")
    storage.fail()
    stub = pb_grpc.StreamRetStub(grpc.insecure_channel(f"127.0.0.1:{srv.port}"))
    acks = list(stub.Append(iter([pb.AppendRequest(stream_id="g", seq=1, text="first "),
                                  pb.AppendRequest(stream_id="g", seq=2, text="second ", durable=True)])))
    assert acks[0].error_code == 0 and acks[0].durable_seq == 0  # this one asked for nothing
    assert acks[1].error_code == grpc.StatusCode.UNAVAILABLE.value[0] and acks[1].retryable, acks[1]
    assert "Read-only file system" in acks[1].error_message and acks[1].durable_seq == 0
    assert temp_files(eng.durable.root) == []


def test_client_stream_fails_instead_of_returning_as_if_saved(served, monkeypatch):
    srv, _ = served
    storage = Storage(monkeypatch, "disk full (fsync)")
    storage.fail()
    with Client(f"127.0.0.1:{srv.port}", retry=RetryPolicy(timeout_s=1.0, initial_backoff_s=0.02)) as c:
        with pytest.raises(TimeoutError, match="No space left on device") as info:
            c.stream("book", ["chapter one. ", "chapter two. "])
        assert "chunks up to 0 are durable" in str(info.value)
        assert storage.failed >= 2  # the client resent its last chunk, and the server tried again


def test_client_stream_retries_a_transient_failure_until_the_record_is_written(served, monkeypatch):
    srv, eng = served
    storage = Storage(monkeypatch, "disk full (fsync)")
    storage.fail(3)  # the next three writes fail, then the disk has room again
    with Client(f"127.0.0.1:{srv.port}", retry=RetryPolicy(timeout_s=30, initial_backoff_s=0.02)) as c:
        ack = c.stream("book", ["chapter one. ", "chapter two. ", "the end."])
    assert storage.failed == 3
    assert ack.durable_seq == ack.seq == 4 and ack.tokens == len("chapter one. chapter two. the end.")
    assert eng.info("default\x1fbook").durable_seq == 4


def test_health_is_not_serving_while_the_state_folder_refuses_writes(served, monkeypatch):
    """A server whose acks that need a record can only fail says so to its load balancer, and says SERVING
    again once a probe write (stage, fsync, rename, like a record) succeeds."""
    srv, eng = served
    storage = Storage(monkeypatch, "read-only folder (rename)")
    channel = grpc.insecure_channel(f"127.0.0.1:{srv.port}")
    health = health_pb2_grpc.HealthStub(channel)
    stub = pb_grpc.StreamRetStub(channel)
    SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING

    def wait_for(status: int) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            got = {health.Check(health_pb2.HealthCheckRequest(service=name)).status
                   for name in ("", "streamret.v1.StreamRet", "streamret.v1.Batch")}
            if got == {status}:
                return
            time.sleep(0.05)
        raise AssertionError(f"health stayed {got}, expected {status}")

    wait_for(SERVING)
    storage.fail()
    (ack,) = stub.Append(iter([pb.AppendRequest(stream_id="h", seq=1, text="needs a record ", durable=True)]))
    assert ack.error_code == grpc.StatusCode.UNAVAILABLE.value[0] and ack.retryable
    wait_for(NOT_SERVING)
    assert eng.stats()["durable_writable"] is False
    assert len(stub.GetEmbedding(pb.GetEmbeddingRequest(stream_id="h")).values) == 64  # reads go on
    storage.heal()
    wait_for(SERVING)
    (ack,) = stub.Append(iter([pb.AppendRequest(stream_id="h", seq=1, text="needs a record ", durable=True)]))
    assert (ack.error_code, ack.duplicate, ack.durable_seq) == (0, True, 1)
    assert temp_files(eng.durable.root) == [] and not list(Path(eng.durable.root).glob(".probe*"))


def test_a_record_that_cannot_be_removed_is_unavailable_and_the_close_can_be_repeated(tmp_path, monkeypatch):
    """Closing a stream on a read-only folder was INTERNAL (the OSError of os.remove); now it is the retryable
    UNAVAILABLE, and closing again once the folder is writable removes the record."""
    with Engine.from_model("random:tiny", device="cpu", state_dir=str(tmp_path)) as e:
        e.append("s", 1, "to be closed. ")
        path = e.durable.path("s")

        def read_only(p):
            raise OSError(errno.EROFS, "Read-only file system")

        monkeypatch.setattr(state_store_module.os, "remove", read_only)
        with pytest.raises(DurableWriteFailed, match="could not remove .*Read-only file system"):
            e.close("s")
        assert os.path.exists(path) and e.exists("s")
        monkeypatch.undo()
        e.close("s")
        assert not os.path.exists(path) and not e.exists("s")
