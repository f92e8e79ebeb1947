"""The engine never leaves a caller waiting: a caller that gives up, or a bug in the step loop."""

import pytest

from streamret.engine import Engine, EngineConfig
from streamret.errors import Unavailable


@pytest.fixture
def engine():
    eng = Engine.from_model("random:tiny", device="cpu", config=EngineConfig())
    yield eng
    eng.shutdown()


def test_a_cancelled_future_does_not_stop_the_engine(engine):
    fut = engine.submit_append("s", 1, "first chunk of text. ")
    fut.cancel()  # a client hung up; the chunk may still be applied
    ack = engine.append("s", 2, "second chunk. ", flush=True)
    assert ack.applied_seq == 2
    assert engine.append("t", 1, "another stream works too. ", flush=True).applied_seq == 1


def test_a_crash_in_the_step_loop_fails_waiting_calls_and_new_ones(engine, monkeypatch):
    engine.append("ok", 1, "applied before the crash. ", flush=True)

    def broken(*args, **kwargs):
        raise RuntimeError("planted bug in booking")

    monkeypatch.setattr(engine, "_apply", broken)
    fut = engine.submit_append("ok", 2, "this one meets the bug. ", flush=True)
    with pytest.raises(Unavailable, match="internal error"):
        fut.result(timeout=30)
    with pytest.raises(Unavailable, match="restart the server"):
        engine.submit_append("ok", 3, "refused at once")
