"""AttachedEngine: a second process's way to the engine processes a ShardedEngine started with listen=True.

Every test runs with each way an engine process reads its connections (STREAMRET_ENGINE_READER: a thread per
connection, or one shared thread)."""

import multiprocessing
import os
import signal
import threading
import time

import numpy as np
import pytest

from streamret.engine import Engine
from streamret.engine.attach import AttachedEngine
from streamret.engine.reader import ENGINE_READERS, engine_reader
from streamret.engine.shards import EngineLink, ShardedEngine, shard_of
from streamret.errors import FailedPrecondition, SeqGap, Unavailable

MODEL = "random:tiny"
TEXT = "A stream that two processes write to. It says one thing, then another, then a third. "


def sid_on(rank: int, procs: int = 2, prefix: str = "s") -> str:
    return next(f"{prefix}{i}" for i in range(1000) if shard_of(f"{prefix}{i}", procs) == rank)


@pytest.fixture(scope="module", params=ENGINE_READERS)
def reader(request):
    """The engine processes started under it read their connections this way (they take the environment)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STREAMRET_ENGINE_READER", request.param)
        yield request.param


@pytest.fixture(scope="module")
def owner(reader):
    with ShardedEngine(MODEL, "cpu", procs=2, listen=True) as eng:
        yield eng


def test_a_stream_written_through_both_reads_the_same_and_matches_one_engine(owner):
    with AttachedEngine(owner.link) as attached:
        assert attached.fingerprint == owner.fingerprint and attached.pids == owner.pids
        assert {s.hello.result()["reader"] for s in attached._shards} == {engine_reader()}
        sids = [sid_on(0), sid_on(1)]
        data = (TEXT * 3).encode()
        for sid in sids:  # chunks 1 and 3 through the owner, 2 through the attached engine: one stream, in order
            owner.append(sid, 1, data[:80])
            attached.append(sid, 2, data[80:160])
            owner.append(sid, 3, data[160:])
            assert attached.append(sid, 3, data[160:]).duplicate  # the engine's seq checks hold across processes
            with pytest.raises(SeqGap):
                attached.append(sid, 5, b"more")
        with Engine.from_model(MODEL, "cpu") as plain:
            for seq, part in enumerate((data[:80], data[80:160], data[160:]), start=1):
                plain.append("p", seq, part)
            for sid in sids:
                np.testing.assert_allclose(attached.embedding(sid), plain.embedding("p"), atol=1e-5)
                np.testing.assert_allclose(owner.embedding(sid), attached.embedding(sid))
        assert attached.stats()["engine_procs"] == 2
        for op, args in (("shutdown", (False, 0.0)), ("checkpoint_all", (0.0,)), ("_check_running", ())):
            with pytest.raises(FailedPrecondition, match="not a front attached to it"):  # the owner's alone
                attached._shards[0].call(op, *args)
        assert attached.checkpoint_all(0.0) is None  # a front's drain leaves the checkpoint to the owner
    assert owner.info(sids[0]).applied_seq == 3  # the attached engine's shutdown left the engines up


def test_a_stranger_without_the_key_is_refused(owner):
    with pytest.raises(multiprocessing.AuthenticationError):
        AttachedEngine(EngineLink(owner.link.folder, os.urandom(32), 2), start_timeout_s=10)
    assert owner.info(sid_on(0)).applied_seq == 3


def test_a_connection_that_says_nothing_or_garbage_holds_up_no_other(owner):
    """Each connection proves the key on its own thread: one that stays silent, and one that sends garbage,
    neither block nor end the engine's taking of connections."""
    import socket

    path = owner.link.address(0)[0]
    silent, garbage = socket.socket(socket.AF_UNIX), socket.socket(socket.AF_UNIX)
    silent.connect(path)
    garbage.connect(path)
    garbage.sendall(b"\xff" * 64)
    try:
        with AttachedEngine(owner.link, start_timeout_s=20) as attached:
            assert attached.info(sid_on(0)).applied_seq == 3
    finally:
        silent.close()
        garbage.close()


def test_a_dead_engine_process_fails_attached_calls_as_unavailable_until_it_is_back(tmp_path, reader):
    with ShardedEngine(MODEL, "cpu", str(tmp_path / "states"), procs=2, listen=True) as eng, \
            AttachedEngine(eng.link) as attached:
        victim, other = sid_on(0, prefix="v"), sid_on(1, prefix="v")
        for sid in (victim, other):
            attached.append(sid, 1, TEXT.encode(), durable=True)
        os.kill(eng.pids[0], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while True:  # the attached engine hears of it when its connection breaks
            try:
                attached.embedding(victim)
            except Unavailable as e:
                assert "exited and is being restarted" in str(e)
                break
            assert time.monotonic() < deadline, "no UNAVAILABLE from the attached engine"
            time.sleep(0.05)
        assert attached.info(other).applied_seq == 1  # the other engine serves on
        deadline = time.monotonic() + 120
        while True:  # the owner starts another at the same address; the attached engine connects again
            try:
                assert attached.info(victim).applied_seq == 1  # read back from its record
                break
            except Unavailable:
                assert time.monotonic() < deadline, "the attached engine did not connect again"
                time.sleep(0.2)
        assert attached.pids == eng.pids
        assert attached.append(victim, 2, b" And on.").applied_seq == 2


def plain_embedding(parts: list[bytes]) -> np.ndarray:
    with Engine.from_model(MODEL, "cpu") as plain:
        for seq, part in enumerate(parts, start=1):
            plain.append("p", seq, part)
        return plain.embedding("p")


def pieces(text: bytes, n: int) -> list[bytes]:
    """text in n chunks."""
    cuts = [len(text) * i // n for i in range(n + 1)]
    return [text[a:b] for a, b in zip(cuts, cuts[1:])]


def test_chunks_of_two_connections_interleaved_keep_each_streams_order_and_are_answered_there(owner):
    """Two fronts' connections to one engine process, their chunks sent without waiting for acks, interleaved:
    each stream's chunks are applied in order and each ack comes back on the connection that sent its chunk."""
    first, second = sid_on(0, prefix="i"), sid_on(0, prefix="j")
    parts = {first: pieces((TEXT * 6).encode(), 24), second: pieces((TEXT[::-1] * 6).encode(), 24)}
    with AttachedEngine(owner.link) as a, AttachedEngine(owner.link) as b:
        sent = {first: [], second: []}
        for k in range(24):
            for engine, sid in ((a, first), (b, second)):
                sent[sid].append(engine.submit_append(sid, k + 1, parts[sid][k]))
        for sid, futures in sent.items():
            acks = [f.result(timeout=60) for f in futures]
            assert [(ack.stream_id, ack.seq, ack.duplicate) for ack in acks] == [
                (sid, k + 1, False) for k in range(24)]
        for engine, sid in ((a, first), (b, second)):
            np.testing.assert_allclose(engine.embedding(sid), plain_embedding(parts[sid]), atol=1e-5)


def test_a_connection_closing_mid_stream_disturbs_no_other(owner):
    """One front hangs up with chunks in flight; the other front's stream on the same engine process goes on
    whole, and the first stream is taken up again from its applied_seq by a new connection."""
    gone, kept = sid_on(0, prefix="g"), sid_on(0, prefix="k")
    parts = pieces((TEXT * 8).encode(), 32)
    with AttachedEngine(owner.link) as b:
        a = AttachedEngine(owner.link)
        in_flight = [a.submit_append(gone, k + 1, parts[k]) for k in range(16)]
        kept_acks = [b.submit_append(kept, k + 1, parts[k]) for k in range(16)]
        a.shutdown()  # its calls not answered yet fail; the engine's own work on them goes on
        kept_acks += [b.submit_append(kept, k + 1, parts[k]) for k in range(16, 32)]
        assert [f.result(timeout=60).seq for f in kept_acks] == list(range(1, 33))
        np.testing.assert_allclose(b.embedding(kept), plain_embedding(parts), atol=1e-5)
        for f in in_flight:  # each an ack or the hang-up's UNAVAILABLE
            assert f.exception(timeout=60) is None or isinstance(f.exception(), Unavailable)
        with AttachedEngine(owner.link) as again:
            applied = again.info(gone).applied_seq
            assert applied <= 16
            for k in range(applied, 32):
                again.append(gone, k + 1, parts[k])
            np.testing.assert_allclose(again.embedding(gone), plain_embedding(parts), atol=1e-5)


def test_the_engines_shutdown_with_connections_open_and_busy_returns(reader):
    """The owner shuts the engine processes down while a front is connected and sending: every process answers
    and exits by itself (exit code 0, not killed), and the front's calls then fail as UNAVAILABLE."""
    eng = ShardedEngine(MODEL, "cpu", procs=2, listen=True)
    attached = AttachedEngine(eng.link)
    sid, stop, errors = sid_on(1, prefix="b"), threading.Event(), []

    attached.append(sid, 1, TEXT.encode())

    def send() -> None:
        seq = 1
        while not stop.is_set():
            seq += 1
            try:
                attached.append(sid, seq, TEXT.encode())
            except Unavailable as e:
                errors.append(e)
                return

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        deadline = time.monotonic() + 60
        while eng.info(sid).applied_seq < 3:  # the front is sending
            assert time.monotonic() < deadline, "no chunk of the front applied"
            time.sleep(0.05)
        eng.shutdown()
        assert [s.process.exitcode for s in eng._shards] == [0, 0]
        sender.join(timeout=30)
        assert not sender.is_alive() and errors, "the front's calls did not fail once the engines were gone"
    finally:
        stop.set()
        attached.shutdown()
        eng.shutdown()


def test_the_reader_switch_names_a_bad_value_and_the_choices(monkeypatch):
    monkeypatch.delenv("STREAMRET_ENGINE_READER", raising=False)
    assert engine_reader() == "shared"
    for value in ENGINE_READERS:
        monkeypatch.setenv("STREAMRET_ENGINE_READER", value)
        assert engine_reader() == value
    monkeypatch.setenv("STREAMRET_ENGINE_READER", "one")
    with pytest.raises(ValueError, match="STREAMRET_ENGINE_READER='one'.*shared, per_connection"):
        engine_reader()
    with pytest.raises(ValueError, match="STREAMRET_ENGINE_READER='one'"):  # the engine processes' start fails
        ShardedEngine(MODEL, "cpu", procs=1, listen=True, start_timeout_s=60)


def test_one_sender_for_many_outboxes_keeps_each_ones_messages_on_its_pipe_in_order():
    """SharedSender (STREAMRET_ENGINE_READER=shared_send): messages put on two outboxes, interleaved, arrive each
    on its own pipe in the order put; closing one sends what it had and leaves the other sending."""
    from multiprocessing import Pipe

    from streamret.engine.pipe import Outbox, SharedSender

    sender = SharedSender("test-send")
    ends = [Pipe() for _ in range(2)]
    outboxes = [Outbox(mine, f"test-{i}", sender=sender) for i, (mine, _) in enumerate(ends)]
    for k in range(2000):
        for i, outbox in enumerate(outboxes):
            outbox.put((i, True, k)) if k % 3 else outbox.put([(i, True, k)])  # a message, or a list of them
    outboxes[0].close()
    outboxes[1].put((1, True, 2000))
    outboxes[0].put((0, True, "after its close"))  # dropped
    for i, (_, theirs) in enumerate(ends):
        got = []
        while len(got) < 2000 + i:
            got += theirs.recv()
        assert got == [(i, True, k) for k in range(2000 + i)]
        assert not theirs.poll(0.2)
    outboxes[1].close()
