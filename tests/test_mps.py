"""The engine processes' own CUDA MPS daemon (streamret/engine/mps.py), on the CPU: a stand-in
`nvidia-cuda-mps-control` on PATH records how it is called, so the start, the environment the engine processes
get, the stop and every way of not starting one are checked without a GPU. On a GPU, bench/e2e.py's engine
parts run under it."""

import json
import logging
import os
import stat

import pytest

from streamret.engine import shards
from streamret.engine.mps import CONTROL, MpsDaemon, mps_mode
from streamret.engine.shards import ShardedEngine

FAKE = """#!/usr/bin/env python3
import json, os, sys
entry = {"args": sys.argv[1:], "stdin": "" if "-d" in sys.argv else sys.stdin.read(),
         "pipe": os.environ.get("CUDA_MPS_PIPE_DIRECTORY"), "log": os.environ.get("CUDA_MPS_LOG_DIRECTORY")}
with open(os.environ["FAKE_MPS_RECORD"], "a") as f:
    f.write(json.dumps(entry) + "\\n")
sys.exit(int(os.environ.get("FAKE_MPS_EXIT", "0")))
"""


@pytest.fixture
def fake_control(tmp_path, monkeypatch):
    """A stand-in control program on PATH; returns a function that reads what it was called with."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    program = bin_dir / CONTROL
    program.write_text(FAKE)
    program.chmod(program.stat().st_mode | stat.S_IEXEC)
    record = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_MPS_RECORD", str(record))
    monkeypatch.delenv("CUDA_MPS_PIPE_DIRECTORY", raising=False)
    monkeypatch.delenv("STREAMRET_MPS", raising=False)
    return lambda: [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


def test_a_daemon_in_a_private_folder_started_and_told_to_quit(fake_control):
    daemon = MpsDaemon.start(procs=2, cuda=True)
    assert daemon is not None and os.path.isdir(daemon.env["CUDA_MPS_PIPE_DIRECTORY"])
    assert daemon.env["CUDA_MPS_PIPE_DIRECTORY"].startswith(daemon.folder)
    daemon.stop()
    started, stopped = fake_control()
    assert started == {"args": ["-d"], "stdin": "", "pipe": daemon.env["CUDA_MPS_PIPE_DIRECTORY"],
                       "log": daemon.env["CUDA_MPS_LOG_DIRECTORY"]}
    assert stopped["args"] == [] and stopped["stdin"] == "quit\n" and stopped["pipe"] == started["pipe"]
    assert not os.path.exists(daemon.folder)


@pytest.mark.parametrize("case", ["one process", "cpu", "off", "the user's own daemon", "no control program"])
def test_no_daemon_where_none_is_wanted_or_possible(fake_control, monkeypatch, case):
    procs, cuda = (1, True) if case == "one process" else (2, case != "cpu")
    if case == "off":
        monkeypatch.setenv("STREAMRET_MPS", "off")
    if case == "the user's own daemon":
        monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", "/tmp/their-mps")
    if case == "no control program":
        monkeypatch.setenv("PATH", "/nonexistent")
    assert MpsDaemon.start(procs, cuda) is None
    assert fake_control() == []


def test_a_failed_start_falls_back_under_auto_and_is_an_error_under_on(fake_control, monkeypatch, caplog):
    monkeypatch.setenv("FAKE_MPS_EXIT", "1")
    with caplog.at_level(logging.WARNING, logger="streamret.engine"):
        assert MpsDaemon.start(2, True) is None
    assert "starting the CUDA MPS control daemon failed" in caplog.text and "time-slice the GPU" in caplog.text
    monkeypatch.setenv("STREAMRET_MPS", "on")
    with pytest.raises(RuntimeError, match="STREAMRET_MPS=auto or off to run without MPS"):
        MpsDaemon.start(2, True)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(RuntimeError, match=f"STREAMRET_MPS=on but {CONTROL} is not on PATH"):
        MpsDaemon.start(2, True)


@pytest.mark.parametrize("value, mode", [("", "auto"), ("AUTO", "auto"), (" on ", "on"), ("off", "off")])
def test_the_mode_from_the_environment(monkeypatch, value, mode):
    monkeypatch.setenv("STREAMRET_MPS", value)
    assert mps_mode() == mode


def test_a_bad_mode_is_named(monkeypatch):
    monkeypatch.setenv("STREAMRET_MPS", "maybe")
    with pytest.raises(ValueError, match="STREAMRET_MPS='maybe': use one of auto, on, off"):
        mps_mode()


def test_engine_processes_get_the_daemon_and_it_stops_after_them(fake_control, monkeypatch):
    """Two engine processes (on the CPU; the device check says GPU): the daemon starts before them, they run
    with its pipe folder in their environment, and it is told to quit when they are shut down."""
    monkeypatch.setattr(shards, "_on_cuda", lambda device: True)
    seen = []
    real_spawn = ShardedEngine._spawn

    def spawn(self, rank):
        seen.append(self._serve_args[-1])  # the environment the engine process sets first
        return real_spawn(self, rank)

    monkeypatch.setattr(ShardedEngine, "_spawn", spawn)
    with ShardedEngine("random:tiny", "cpu", procs=2) as engine:
        engine.append("s", 1, b"Hello there. ")
        assert len(fake_control()) == 1 and engine.stats()["mps"]  # started, not stopped yet
        folder = engine._mps.folder
    started, stopped = fake_control()
    assert seen == [{"CUDA_MPS_PIPE_DIRECTORY": started["pipe"], "CUDA_MPS_LOG_DIRECTORY": started["log"]}] * 2
    assert stopped["stdin"] == "quit\n" and not os.path.exists(folder)
