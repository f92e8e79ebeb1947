"""The step thread's short GIL switch interval (streamret/engine/gil.py, EngineConfig.step_switch_interval_s)."""

from __future__ import annotations

import sys
import threading

import pytest

from streamret.engine import Engine, EngineConfig
from streamret.engine.gil import quick_handoff


@pytest.fixture
def interval():
    base = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    yield
    sys.setswitchinterval(base)


def test_quick_handoff_lowers_the_interval_inside_and_restores_it(interval):
    with quick_handoff(1e-4):
        assert sys.getswitchinterval() == pytest.approx(1e-4, rel=0.05)
    assert sys.getswitchinterval() == pytest.approx(0.005)
    with pytest.raises(RuntimeError), quick_handoff(1e-4):  # restored when the block raises too
        raise RuntimeError("boom")
    assert sys.getswitchinterval() == pytest.approx(0.005)
    with quick_handoff(None):  # None: the process's interval, untouched
        assert sys.getswitchinterval() == pytest.approx(0.005)
    with quick_handoff(0.5):  # never longer than the process's own
        assert sys.getswitchinterval() == pytest.approx(0.005)


@pytest.mark.parametrize("bad", [0.0, 0, -1e-4, 2.0, True, "fast"])
def test_the_config_names_a_bad_interval(bad):
    with pytest.raises(ValueError, match=rf"step_switch_interval_s={bad!r}: give a switch interval in \(0, 1\]"):
        EngineConfig(step_switch_interval_s=bad)


def test_one_rule_for_intervals_given_as_text():
    """Flags and variables parse through the config's own check: "none" leaves the process's interval."""
    import argparse

    from streamret.engine.gil import parse_switch_interval, switch_interval_arg

    assert parse_switch_interval("0.0001", "--x") == pytest.approx(1e-4)
    assert parse_switch_interval(" None ", "--x") is None
    for bad in ("0", "2", "fast", "nan"):
        with pytest.raises(ValueError, match=r"--x=\S+: give a switch interval in \(0, 1\] seconds"):
            parse_switch_interval(bad, "--x")
    with pytest.raises(argparse.ArgumentTypeError, match="--flag"):
        switch_interval_arg("--flag")("-1")


@pytest.mark.parametrize("setting", [2e-4, None])
def test_a_step_runs_its_gather_model_call_and_scatter_under_the_configured_interval(interval, setting):
    seen: dict[str, list[float]] = {"gather": [], "run": [], "scatter": []}
    with Engine.from_model("random:tiny", device="cpu", config=EngineConfig(step_switch_interval_s=setting)) as e:
        def recording(name: str, call):
            def wrapped(*args, **kwargs):
                seen[name].append(sys.getswitchinterval())
                return call(*args, **kwargs)
            return wrapped

        for name, owner in (("gather", e.store), ("run", e.runner), ("scatter", e.store)):
            setattr(owner, name, recording(name, getattr(owner, name)))
        e.append("s", 1, b"Hello there. A second sentence follows here.")
        assert e.info("s").applied_seq == 1 and e.summarize("s", k=1).segments
    want = 0.005 if setting is None else setting
    assert all(v and all(x == pytest.approx(want, rel=0.05) for x in v) for v in seen.values()), seen
    assert sys.getswitchinterval() == pytest.approx(0.005)  # the engine's thread put it back


def test_an_interval_set_by_other_code_meanwhile_stays(interval):
    with quick_handoff(1e-4):
        sys.setswitchinterval(0.002)  # the process's choice, made while a section is open
    assert sys.getswitchinterval() == pytest.approx(0.002)


def test_overlapping_sections_of_two_threads_restore_the_process_interval(interval):
    inside, leave = threading.Event(), threading.Event()

    def other() -> None:  # enters second, leaves last
        with quick_handoff(3e-4):
            inside.set()
            leave.wait(10)

    t = threading.Thread(target=other)
    with quick_handoff(1e-4):
        t.start()
        assert inside.wait(10)
        assert sys.getswitchinterval() == pytest.approx(1e-4, rel=0.05)
    assert sys.getswitchinterval() <= 3e-4  # the other thread's section still holds
    leave.set()
    t.join()
    assert sys.getswitchinterval() == pytest.approx(0.005)  # the last to leave put the process's back
