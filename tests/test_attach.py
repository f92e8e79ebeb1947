"""AttachedEngine: a second process's way to the engine processes a ShardedEngine started with listen=True."""

import multiprocessing
import os
import signal
import time

import numpy as np
import pytest

from streamret.engine import Engine
from streamret.engine.attach import AttachedEngine
from streamret.engine.shards import EngineLink, ShardedEngine, shard_of
from streamret.errors import FailedPrecondition, SeqGap, Unavailable

MODEL = "random:tiny"
TEXT = "A stream that two processes write to. It says one thing, then another, then a third. "


def sid_on(rank: int, procs: int = 2, prefix: str = "s") -> str:
    return next(f"{prefix}{i}" for i in range(1000) if shard_of(f"{prefix}{i}", procs) == rank)


@pytest.fixture(scope="module")
def owner():
    with ShardedEngine(MODEL, "cpu", procs=2, listen=True) as eng:
        yield eng


def test_a_stream_written_through_both_reads_the_same_and_matches_one_engine(owner):
    with AttachedEngine(owner.link) as attached:
        assert attached.fingerprint == owner.fingerprint and attached.pids == owner.pids
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


def test_a_dead_engine_process_fails_attached_calls_as_unavailable_until_it_is_back(tmp_path):
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
