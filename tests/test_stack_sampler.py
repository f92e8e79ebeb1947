"""streamret/stack_sampler.py: a thread's stack sampled by line, the engine's step thread under
STREAMRET_STEP_SAMPLES, and the counts through stats() (summed over engine processes, subtracted between parts)."""

import threading
import time

import pytest

from streamret.engine import Engine
from streamret.engine.shards import merge_stats
from streamret.stack_sampler import StackSampler, counts_between, step_sample_interval, summarize
from streamret.thread_cpu import role


def _sleeps_here(stop: threading.Event) -> None:
    while not stop.is_set():
        time.sleep(0.002)


def test_the_sampler_finds_the_line_a_thread_waits_at_and_stops_with_it():
    stop = threading.Event()
    worker = threading.Thread(target=_sleeps_here, args=(stop,), name="sleeper")
    worker.start()
    sampler = StackSampler(worker, every_s=0.001, lines=True).start()
    time.sleep(0.2)
    stop.set()
    worker.join()
    sampler._thread.join(timeout=2)  # it ends by itself once its thread has ended
    assert not sampler._thread.is_alive()
    counts = sampler.counts()
    assert counts["samples"] >= 20
    line = _sleeps_here.__code__.co_firstlineno + 2  # the time.sleep line
    top = summarize(counts, 3, "sleeper")
    assert top["own"][0]["function"] == f"test_stack_sampler.py:_sleeps_here:{line}" and top["own"][0]["share"] > 0.8
    # (a sample or two may land in the thread's start or end, outside the function)
    assert counts["inside"]["test_stack_sampler.py:_sleeps_here"] >= counts["samples"] - 2
    assert role(sampler._thread.name) == "python"  # its CPU is not booked as the sampled thread's (a "-step")


def test_counts_between_two_snapshots_and_summed_over_engines():
    before = {"samples": 10, "every_s": 0.001, "own": {"a:f:1": 10}, "inside": {"a:f": 10}}
    after = {"samples": 30, "every_s": 0.001, "own": {"a:f:1": 12, "b:g:7": 18}, "inside": {"a:f": 12, "b:g": 18}}
    assert counts_between(before, after) == {"samples": 20, "every_s": 0.001, "own": {"a:f:1": 2, "b:g:7": 18},
                                             "inside": {"a:f": 2, "b:g": 18}}
    assert counts_between(None, None) is None
    restarted = {"samples": 5, "every_s": 0.001, "own": {"b:g:7": 5}, "inside": {"b:g": 5}}  # counts from zero again
    assert counts_between(after, restarted)["samples"] == 0 and not counts_between(after, restarted)["own"]
    merged = merge_stats([{"step_samples": after}, {"step_samples": before}])["step_samples"]
    assert merged == {"samples": 40, "every_s": 0.001, "own": {"a:f:1": 22, "b:g:7": 18},
                      "inside": {"a:f": 22, "b:g": 18}}  # (the period is the engines' own, not a sum)


@pytest.mark.parametrize("value, seconds", [("", None), ("1", 0.001), ("0.5", 0.0005)])
def test_the_interval_from_the_environment(monkeypatch, value, seconds):
    monkeypatch.setenv("STREAMRET_STEP_SAMPLES", value)
    assert step_sample_interval() == seconds


@pytest.mark.parametrize("bad", ["often", "0", "-1", "5000"])
def test_a_bad_interval_is_named(monkeypatch, bad):
    monkeypatch.setenv("STREAMRET_STEP_SAMPLES", bad)
    with pytest.raises(ValueError, match=f"STREAMRET_STEP_SAMPLES={bad!r}: give milliseconds"):
        step_sample_interval()


def test_the_engine_samples_its_step_and_tokenize_threads_only_when_asked(monkeypatch):
    monkeypatch.delenv("STREAMRET_STEP_SAMPLES", raising=False)
    with Engine.from_model("random:tiny", device="cpu") as e:
        e.append("s", 1, b"One sentence here. ")
        assert "step_samples" not in e.stats() and "tokenize_samples" not in e.stats()
    monkeypatch.setenv("STREAMRET_STEP_SAMPLES", "1")
    with Engine.from_model("random:tiny", device="cpu") as e:
        for seq in range(1, 6):
            e.append("s", seq, b"One sentence here, and a second one after it. ")
        time.sleep(0.05)
        samples, stage = e.stats()["step_samples"], e.stats()["tokenize_samples"]
    assert stage["samples"] > 0 and any(name.startswith("engine/tokenize_stage.py:_run") for name in stage["inside"])
    assert samples["samples"] > 0 and samples["every_s"] == 0.001
    assert any(name.startswith("engine/core.py:_steps_forever") for name in samples["inside"])
    assert all(name.count(":") == 2 for name in samples["own"])  # file:function:line
