"""bench/e2e.py: its text is real text or an error (never random tokens), and the whole pipeline runs
(--smoke) before any GPU time is spent on it."""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))

import e2e  # noqa: E402  (bench/e2e.py)
import service as service_bench  # noqa: E402  (bench/service.py)

from streamret.engine import EngineConfig  # noqa: E402

ROFF = r""".\" a comment
.TH DEMO 1 "2026" "demo 1.0" "User Commands"
.SH NAME
demo \- reads \fBlong\fR text streams
.SH DESCRIPTION
.B demo
keeps a state per stream and
.BR answers (1)
at any moment \(em cheaply.
.de XX
.nr internal \\n[margin]
..
.TS
table;
.TE
.PP
Second paragraph with a \e backslash.
"""


def test_roff_to_text_keeps_the_prose_and_drops_the_markup():
    text = e2e.roff_to_text(ROFF)
    assert text.split("\n\n") == [
        "NAME", "demo - reads long text streams", "DESCRIPTION",
        "demo keeps a state per stream and answers(1) at any moment \u2014 cheaply.",
        "Second paragraph with a \\ backslash."]


def test_find_text_fails_rather_than_make_up_tokens(tmp_path: Path):
    short = tmp_path / "short.txt"
    short.write_text("A few words of English. " * 20)
    with pytest.raises(SystemExit, match="never falls back to random tokens"):
        e2e.find_text([str(short)], 1 << 20, 64 << 10)
    text, used = e2e.find_text([str(short)], 1 << 20, 100)
    assert text == short.read_text().strip() and used[0]["source"] == f"--text {short}"


def test_find_text_takes_what_the_machine_has(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(e2e, "MAN_DIR", tmp_path / "no-man-pages")  # pydoc topics, then the repo's Markdown
    text, used = e2e.find_text([], 200_000, 1000)
    assert len(text.encode()) <= 200_000 and sum(u["bytes"] for u in used) >= 150_000
    assert used[0]["source"].startswith("Python's help topics") or "Markdown" in used[0]["source"]


def test_service_chunks_come_from_the_text(tmp_path: Path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"0123456789")
    service_bench.use_text(str(path))
    try:
        assert service_bench.chunks_of(0, 2, 3) == [b"012", b"345"]
        assert service_bench.chunks_of(1, 2, 3) == [b"678", b"901"]  # its own offset, wrapping around
    finally:
        service_bench.use_text(None)
    assert service_bench.chunks_of(0, 1, 8)[0] == service_bench.make_text(0, 8)


def test_service_chunks_come_from_a_gzipped_text_decompressed(tmp_path: Path):
    path = tmp_path / "t.txt.gz"  # (as .device/text/man.txt.gz: its compressed bytes were once cut into chunks)
    path.write_bytes(gzip.compress(b"0123456789"))
    service_bench.use_text(str(path))
    try:
        assert service_bench.chunks_of(0, 2, 3) == [b"012", b"345"]
    finally:
        service_bench.use_text(None)


@pytest.mark.slow
def test_a_failed_load_names_its_first_failure_not_the_streams_stopped_after_it():
    """bench/service.py: the failure that happened first leads the report, with its stream, chunk and call; the
    streams its process stops afterwards are not counted as failures."""
    import asyncio

    async def fails(sid: str, after_s: float, call: str):
        await asyncio.sleep(after_s)
        raise service_bench.StreamFailed(sid, 3, call, RuntimeError("boom"))

    async def never_ends():
        await asyncio.sleep(60)

    async def load():
        with pytest.raises(service_bench.LoadFailed) as failed:
            await service_bench.until_first_failure([fails("late", 0.2, "Append"), never_ends(),
                                                     fails("early", 0.05, "OpenStream")])
        return failed.value.records

    records = asyncio.run(load())
    assert [r["stream"] for r in records] == ["early"]  # "late" was stopped before it failed, never_ends too
    text = service_bench.first_failures([{"failures": records}, {"tokens": 1}], records[0]["at"] - 1.5)
    assert text.startswith("first: stream early chunk 3, OpenStream, 1.50 s after the load started (load process "
                           "0): RuntimeError: boom"), text


def test_smoke_runs_every_part(tmp_path: Path):
    proc = subprocess.run([sys.executable, str(BENCH / "e2e.py"), "--smoke", "--model", "random:tiny",
                           "--server-gc-gen0", "700", "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "e2e.json").read_text())
    assert "--server-gc-gen0 700" in result["command"]  # (the server's threshold, through gc_pauses.GEN0_ENV)
    assert set(result["parts"]) == {"packed", "engine_4", "engine_16", "profile_4", "service_saturate",
                                    "service_half", "batch_long", "batch_short"}
    assert result["text"]["tokens"] > 0 and not result["errors"]
    assert result["versions"]["python_core_ms"] > 0  # the host's speed, beside the figures it shapes
    assert result["engine_config"]["step_switch_interval_s"] == EngineConfig.step_switch_interval_s
    assert result["engine_config"]["device_wait"] == EngineConfig.device_wait
    assert all(row["tokens_per_s"] > 0 for row in result["table"])
    assert "profile_4" not in {row["part"] for row in result["table"]}  # not a throughput figure
    for name in ("engine_4", "engine_16"):  # the step loop's parts add up to at most the part's wall time
        part = result["parts"][name]
        per_step = part["loop_parts_ms_per_step"]  # (idle: waiting for work, before and after the load too)
        busy = sum(v for k, v in per_step.items() if k != "idle")
        assert part["steps"] > 0 and busy * part["steps"] <= part["seconds"] * 1e3 * 1.05
        cpu = part["loop_parts_cpu_ms_per_step"]  # the step thread's CPU within the same spans
        assert set(cpu) == set(per_step) and all(0 <= cpu[k] <= per_step[k] + 0.05 for k in cpu), (cpu, per_step)
        call = part["load_legs_ms"]["submit_call"]  # the load's own leg: a submit_append call
        assert 0 <= call["p50"] <= call["p99"]
        items = part["engine_item_ms"]  # an item's ms in the tokenize stage, and of them its wait and its batch's
        assert 0 <= items["stage_wait_p50"] and 0 < items["cutting_p50"] <= items["tokenize_p99"], items
        legs = part["ack_legs"]  # a chunk's round trip: the load's stamps around the engine's (no pipe here)
        assert legs["chunks"] > 0 and legs["stages"] == [
            "client_sent", "engine_accepted", "engine_cutting", "engine_cut", "engine_queued", "engine_applied",
            "client_received"]
        assert all(leg["negative"] == 0 for leg in legs["legs_ms"].values()), legs
    assert "engine_16: a chunk's round trip by leg" in proc.stdout
    for name in ("service_saturate", "service_half"):  # an ack's time by leg: the in-process engine has no pipe
        legs = result["parts"][name]["ack_legs"]
        assert legs["chunks"] > 0 and legs["stages"] == [
            "client_due", "client_sent", "server_read", "engine_accepted", "engine_cutting", "engine_cut",
            "engine_queued", "engine_applied", "ack_writing", "ack_written", "client_received"]
    assert "service_half: an ack's time by leg" in proc.stdout
    assert "the step loop's ms a step by part, wall / the step thread's CPU" in proc.stdout
    for name in ("engine_4", "service_saturate", "service_half"):  # whether the host's CPU bound the part
        assert 0 < result["parts"][name]["host_cores_busy"] <= result["parts"][name]["host_cores"] + 0.05, name
    for name in ("service_saturate", "service_half"):  # the load processes' own CPU, apart from the server's
        assert result["parts"][name]["cpu_us_per_token"]["client_procs"] > 0
    for name, docs in (("batch_long", 2), ("batch_short", 8)):  # the batch parts' timeline: every chunk in a bin
        part = result["parts"][name]
        tl = part["timeline"]
        assert len(tl["chunks"]) == len(tl["documents"]) == 20 and max(tl["documents"]) <= docs, tl
        assert (0 <= tl["first_accepted_ms"] <= tl["first_queued_ms"] <= tl["first_applied_ms"]
                <= tl["last_applied_ms"] <= 20 * tl["bin_ms"] + 0.1), tl
        assert sum(tl["chunks"]) >= docs  # (each document's chunks, its flush included)
        assert part["parts"] == 1 and result["args"]["part_bytes"] == 0  # (the job's default part: 1 MiB here)
        line = f"{name}: chunks applied / documents under way in 20 bins of {tl['bin_ms']} ms (the job's span, 1 part;"
        assert line in proc.stdout
    for name in ("engine_4", "engine_16", "service_saturate", "service_half"):  # the loops' idle share by bin
        idle = result["parts"][name]["idle"]
        assert len(idle["share"]) == 20 and all(0 <= x <= 1.001 for x in idle["share"]), idle
        assert idle["engines"] == 1 and idle["overall"] == pytest.approx(sum(idle["share"]) / 20, abs=2e-3)
        assert f"{name}: the engines' step loops idle (no step in flight, nothing queued)" in proc.stdout
    for name in ("engine_4", "engine_16", "service_saturate", "batch_long", "batch_short"):  # the tokenize calls
        calls = result["parts"][name]["tokenize_calls"]
        assert calls["calls"] > 0 and sum(calls["items_buckets"]) == calls["calls"], calls
        assert calls["items_per_call"] >= 1 and calls["kb_per_call"] > 0, calls
    assert "the tokenize stage's calls (all engines)" in proc.stdout
    samples = result["parts"]["profile_4"]["step_thread_samples"]
    assert samples["samples"] > 0 and any("_steps_forever" in r["function"] for r in samples["inside"])
    assert "stack samples of thread streamret-engine-step" in (tmp_path / "e2e_profile.txt").read_text()


def test_smoke_batch_over_engine_processes_stamps_the_hand_over(tmp_path: Path):
    """With engine processes a batch part's timeline also says when the job handed the part's documents to them
    (its Parquet read and text checks done): before any engine accepted a chunk."""
    proc = subprocess.run([sys.executable, str(BENCH / "e2e.py"), "--smoke", "--model", "random:tiny",
                           "--parts", "batch", "--engine-procs", "2", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "e2e.json").read_text())
    for name in ("batch_long", "batch_short"):
        tl = result["parts"][name]["timeline"]
        assert 0 <= tl["first_handed_ms"] <= tl["first_accepted_ms"] <= tl["first_applied_ms"], tl
        assert f"the first part's documents handed to the engines at {tl['first_handed_ms']} ms" in proc.stdout


@pytest.mark.slow
def test_smoke_service_over_two_front_processes(tmp_path: Path):
    proc = subprocess.run([sys.executable, str(BENCH / "e2e.py"), "--smoke", "--model", "random:tiny",
                           "--parts", "service", "--front-procs", "2", "--step-switch-interval", "none",
                           "--device-wait", "spin", "--step-samples", "1",
                           "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "STREAMRET_ENGINE_READER": "per_connection"})  # (not the default)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "e2e.json").read_text())
    assert set(result["parts"]) == {"service_saturate", "service_half"} and not result["errors"]
    sat = result["parts"]["service_saturate"]
    # the load spread over 8 connections per process; the second front's CPU counted apart: the key is there only
    # when its process was read. Not "> 0": /proc counts CPU in clock ticks (10 ms) and the smoke load gives that
    # front about one tick, so it reads 0 now and then (CI 2026-12-05: 0.0; three runs here: 1-4 ticks)
    assert sat["channels_per_proc"] == 8
    assert all(result["parts"][n]["cpu_us_per_token"]["front_procs"] >= 0 for n in ("service_saturate", "service_half"))
    assert result["engine_config"]["front_procs"] == 2
    assert result["engine_config"]["step_switch_interval_s"] is None  # (off: the engine processes' own interval)
    assert result["engine_config"]["device_wait"] == "spin"  # (not the default)
    # --step-samples: the engine process (it takes this process's environment) sampled its step thread
    assert sat["step_samples"]["samples"] > 0 and sat["step_samples"]["own"]
    assert "service_saturate: the step threads' stacks, sampled" in proc.stdout
    assert result["engine_config"]["engine_reader"] == "per_connection"  # (the engine processes take the environment)


@pytest.mark.parametrize("procs", [1, 2], ids=["in-process", "engine-procs-2"])
def test_engine_load_reads_every_chunk_and_its_acks(procs: int):
    """bench/service.py's engine load: with engine processes through submit_append_to (acks in batches, a
    pass's chunks released together), in this process through submit_append's Futures; either way every chunk
    is acked once, the tokens add up to the text's, and each chunk after a stream's first window has a
    turnaround from the ack that freed its place."""
    from streamret.engine import Engine
    from streamret.engine.shards import ShardedEngine
    from streamret.model.spec import load_model

    args = argparse.Namespace(streams=6, chunks=5, chunk_bytes=256, window=2)
    engine = Engine.from_model("random:tiny", "cpu") if procs == 1 else ShardedEngine("random:tiny", "cpu",
                                                                                      procs=procs)
    try:
        if procs > 1:  # every chunk goes through the batched path
            sent = []
            submit_to = engine.submit_append_to
            engine.submit_append_to = lambda *a, **k: (sent.append(k.get("hold")), submit_to(*a, **k))[1]
        row = service_bench.run_engine(engine, args, "t", stamps=True)
        if procs > 1:
            assert sent == [True] * (args.streams * args.chunks)
    finally:
        engine.shutdown()
    tokenizer = load_model("random:tiny", device="cpu").tokenizer
    want = sum(len(tokenizer.encode(b"".join(service_bench.chunks_of(s, args.chunks, args.chunk_bytes)).decode()))
               for s in range(args.streams))
    assert row["tokens"] == want
    stamps = row["chunk_stamps"]
    assert sorted((s, q) for s, q, _ in stamps["client_sent"]) == sorted(
        (s, q) for s, q, _ in stamps["client_received"]) == [
        (f"t-{s}", q) for s in range(args.streams) for q in range(1, args.chunks + 1)]
    turn = row["load_legs_ms"]["ack_to_next_sent"]
    assert 0 <= turn["p50"] <= turn["p99"]


def test_idle_timeline_splits_each_engines_waits_over_the_bins_they_overlap():
    """Two engines over a 1 s part in 4 bins: a wait across the first two bins' border counts in both, one that
    began before the part only from its start, one past its end only up to it; shares are of both engines' time."""
    stats = {"engine_procs": 2, "recent_idle": [(99.0, 1.1), (100.2, 0.1), (100.9, 0.5), (98.0, 0.5)]}
    idle = e2e.idle_timeline(stats, 100.0, 101.0, bins=4)
    # bin 0 [100, 100.25): 0.1 (the first wait, to 100.1) + 0.05 (the second, from 100.2); bin 1: 0.05; bin 3: 0.1
    assert idle["bin_ms"] == 250.0 and idle["engines"] == 2
    assert idle["share"] == pytest.approx([0.3, 0.1, 0.0, 0.2], abs=1e-3)
    assert idle["overall"] == pytest.approx(0.15, abs=1e-3)
    assert e2e.idle_timeline({}, 0.0, 1.0, bins=2) == {"bin_ms": 500.0, "engines": 1, "share": [0.0, 0.0],
                                                       "overall": 0.0}


def test_host_cpu_samples_give_busy_and_stolen_cores_and_the_topology(monkeypatch):
    """bench/cpu_threads.py: busy counts steal too, stolen apart; /proc/cpuinfo's cores and siblings."""
    import cpu_threads

    monkeypatch.setattr(cpu_threads.os, "cpu_count", lambda: 16)
    before, after = (100, 1000, 10), (700, 2000, 110)  # of 1,000 jiffies: 600 busy, 100 of them stolen
    assert cpu_threads.host_cores_busy(before, after) == 9.6
    assert cpu_threads.host_cores_stolen(before, after) == 1.6
    assert cpu_threads.host_cores_stolen(None, after) is None and cpu_threads.host_cores_stolen(after, after) is None
    sample = cpu_threads.host_cpu_sample()
    if sample is not None:  # Linux
        assert len(sample) == 3 and 0 <= sample[2] <= sample[0] <= sample[1]
    topology = cpu_threads.cpu_topology()
    if topology:
        assert topology["logical_cpus"] >= 1
        assert topology.get("siblings_per_package", 1) >= topology.get("cores_per_package", 1) >= 1
    cpu = "processor\t: {}\nmodel name\t: Some CPU\nphysical id\t: 0\nsiblings\t: 4\ncpu cores\t: 2\n"
    assert cpu_threads.cpu_topology("\n".join(cpu.format(i) for i in range(4))) == {
        "model": "Some CPU", "logical_cpus": 4, "packages": 1, "cores_per_package": 2, "siblings_per_package": 4}
    assert 0 < cpu_threads.python_core_ms(repeats=1) < 10_000  # ms of one core's fixed Python work


def test_parts_default_to_all_and_say_whether_they_were_named():
    """All parts by default, and the run knows they were not named: a part it cannot do (profile with engine
    processes) is then skipped with a note instead of failing the run; named in --parts it stays an error."""
    default = e2e.parse_args([])
    assert default.parts.split(",") == list(e2e.PARTS) and not default.parts_given
    named = e2e.parse_args(["--parts", "engine,profile"])
    assert named.parts == "engine,profile" and named.parts_given


def test_a_service_part_that_cannot_import_the_server_fails_before_any_part_runs(monkeypatch, capsys):
    """The GPU image lacks grpc_health unless its wheel is carried: the run says so when its arguments are read,
    not after minutes of packed and engine parts (session 51); without the service part nothing is imported."""
    monkeypatch.setitem(sys.modules, "streamret.service.server", None)  # (an import of it raises ImportError)
    with pytest.raises(SystemExit) as exc:
        e2e.parse_args(["--parts", "packed,engine,service"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "grpcio-health-checking" in err and "leave service out of --parts" in err
    assert e2e.parse_args(["--parts", "packed,engine"]).parts == "packed,engine"


def test_the_brief_gives_a_line_per_part_with_its_ratio_to_packed(tmp_path):
    import e2e_brief  # (bench/e2e_brief.py)

    part = {"tokens_per_s": 3e6,
            "engine_cpu_us_per_token_by_thread": {"python": 0.5, "step": 0.7, "tokenize_procs": 1.3},
            "loop_parts_ms_per_step": {"idle": 80.0},
            "engine_item_ms": {"tokenize_p50": 68.0, "queued_to_applied_p50": 13.6}, "streams_per_step": 4.66}
    service = {**part, "ack_p50_ms": 33.9, "ack_p99_ms": 61.4}
    config = {"max_step_tokens": 32768, "tokenizer_threads": 4, "tokenize_split_bursts": True, "overlap_steps": None}
    (tmp_path / "e2e.json").write_text(json.dumps({"engine_config": config, "versions": {"python_core_ms": 11.2},
                                                   "parts": {"packed": {"tokens_per_s": 12e6}, "batch_short": part,
                                                             "service_half": service}}))
    head, line, service_line = e2e_brief.lines(str(tmp_path))
    assert head.endswith("settings: step tokens 32768, tokenize threads 4, split bursts True, overlap None; "
                         "host python_core_ms 11.2")
    assert "batch_short" in line and "3.00 M (0.250)" in line and "tokenize_procs 1.3" in line and "p50 ms 68.0" in line
    assert "queued-to-applied p50 ms 13.6" in line and line.endswith("streams a step 4.7")
    assert " service_half " in service_line
    assert service_line.endswith("streams a step 4.7  ack p50 / p99 ms 33.9 / 61.4")
    assert e2e_brief.lines(str(tmp_path / "none")) == []
