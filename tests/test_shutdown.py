"""Shutdown within its time (issue 15, item 5): a drain or checkpoint honours its timeout instead of applying
every queued chunk; what it did not apply is left for the clients to resend (durable_seq says where), and the
report and the server's last log line say truthfully what is durable and what is not. random:tiny on CPU."""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import Future

import numpy as np
import pytest
from helpers_chaos import stream_text
from helpers_server import ServeProcess

from streamret.client import Client, RetryPolicy
from streamret.engine import Engine, EngineConfig
from streamret.errors import Unavailable
from streamret.service.server import BackgroundServer, ServerConfig

pytestmark = pytest.mark.timeout(240)

KiB = 1024


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(np.asarray(b, np.float64)))


def test_a_checkpoint_that_runs_out_of_time_leaves_the_rest_for_clients_to_resend(tmp_path):
    """4 streams with 24 chunks of 4 KiB queued each (~4 s of work here), chunks split across 1,024-token steps,
    0.5 s to checkpoint: it returns within seconds, drops what it did not apply (the acks fail as retryable
    Unavailable), writes what it applied, and says so. A restart finds every stream durable at its applied_seq
    (every acked chunk included); resending from there gives the undisturbed embedding."""
    text = stream_text(1, 24 * 4 * KiB)
    data = text.encode()
    chunks = [data[i : i + 4 * KiB] for i in range(0, len(data), 4 * KiB)]
    config = EngineConfig(max_step_tokens=1024)
    state_dir = str(tmp_path / "states")
    sids = [f"s{i}" for i in range(4)]
    engine = Engine.from_model("random:tiny", device="cpu", state_dir=state_dir, config=config)
    futures: dict[str, list[Future]] = {sid: [] for sid in sids}
    for seq, chunk in enumerate(chunks, 1):
        for sid in sids:
            futures[sid].append(engine.submit_append(sid, seq, chunk))
    for sid in sids:  # the drain starts with work done (each stream has a record) and much more queued
        futures[sid][0].result()
    started = time.monotonic()
    report = engine.checkpoint_all(timeout_s=0.5)
    took = time.monotonic() - started
    assert took < 5.0, took
    assert report.durable_store and report.dropped_chunks > 0 and not report.everything_durable, report
    assert report.not_durable == 0 and report.timeout_s == 0.5
    line = report.describe()
    assert f"{report.dropped_chunks} accepted chunk(s)" in line and "not applied within 0.5 s" in line, line
    assert "durable_seq + 1" in line
    acked = {}
    for sid in sids:
        done = [f for f in futures[sid] if f.exception() is None]
        acked[sid] = max((f.result().seq for f in done), default=0)
        failed = [f.exception() for f in futures[sid] if f.exception() is not None]
        assert all(isinstance(e, Unavailable) and "resend" in str(e) for e in failed), failed[:1]
        assert len(done) + len(failed) == len(chunks)
    assert sum(len(chunks) - n for n in acked.values()) == report.dropped_chunks
    with pytest.raises(Unavailable, match="shutting down"):
        engine.submit_append(sids[0], acked[sids[0]] + 1, b"more")
    engine.shutdown()

    with Engine.from_model("random:tiny", device="cpu", state_dir=state_dir, config=config) as again:
        for sid in sids:
            info = again.open(sid, create_if_missing=False)
            assert info.applied_seq == info.durable_seq >= acked[sid], (sid, info, acked[sid])
            for seq in range(info.applied_seq + 1, len(chunks) + 1):
                again.submit_append(sid, seq, chunks[seq - 1])
            again.append(sid, len(chunks) + 1, b"", flush=True)
        got = {sid: again.embedding(sid) for sid in sids}
        again.append("undisturbed", 1, text, flush=True)
        ref = again.embedding("undisturbed")
    for sid in sids:
        assert rel_err(got[sid], ref) <= 1e-5, sid


def test_a_checkpoint_with_time_enough_keeps_the_engine_running(tmp_path):
    with Engine.from_model("random:tiny", device="cpu", state_dir=str(tmp_path / "s"),
                           config=EngineConfig(durable_every_chunks=0)) as engine:
        engine.append("a", 1, "some words ")
        report = engine.checkpoint_all(timeout_s=30)
        assert report.everything_durable and report.written == 1 and report.dropped_chunks == 0, report
        assert report.describe().startswith("every stream's applied chunks are durable (1 stream(s), 1 record(s)")
        assert engine.append("a", 2, "more ").applied_seq == 2  # still running
        with pytest.raises(ValueError, match="timeout_s must be >= 0"):
            engine.checkpoint_all(timeout_s=-1)


def test_a_server_without_a_state_dir_does_not_claim_durability(caplog):
    engine = Engine.from_model("random:tiny", device="cpu")
    try:
        srv = BackgroundServer(engine, ServerConfig(port=0, drain_timeout_s=5))
        with Client(f"127.0.0.1:{srv.port}") as c:
            c.stream("kept-in-memory", ["a few words ", "and more"])
        with caplog.at_level(logging.INFO, logger="streamret.service"):
            srv.stop()
    finally:
        engine.shutdown()
    stops = [r for r in caplog.records if r.getMessage().startswith("stopped;")]
    assert len(stops) == 1 and stops[0].levelno == logging.WARNING
    message = stops[0].getMessage()
    assert "nothing is durable" in message and "1 stream state(s) in memory are lost" in message, message
    assert "every stream" not in message


def test_sigterm_honours_drain_timeout_s_and_the_last_line_says_what_is_not_durable(tmp_path):
    """`streamret serve --drain-timeout-s 1` with up to 3 MiB queued (~30 s of work here, unloaded): SIGTERM exits
    0 within seconds (12 s allowed on a loaded 2-core machine), its last line names the chunks not applied, and a
    restart finds each stream durable at its applied_seq, ready for the client to resend the rest."""
    rng = random.Random(3)
    text = "".join(rng.choice(["river ", "boat ", "Fähre ", "渡し舟 ", "grain. "]) for _ in range(200_000)).encode()
    pieces = [text[i : i + 64 * KiB] for i in range(0, 16 * 64 * KiB, 64 * KiB)]
    assert len(pieces[-1]) == 64 * KiB
    with ServeProcess(tmp_path / "states", "--drain-timeout-s", "1", "--metrics-port", "0",
                      cwd=tmp_path) as server:
        server.start()
        errors: list[BaseException] = []
        acked = {f"big-{i}": threading.Event() for i in range(3)}

        def send(sid: str) -> None:
            try:
                with Client(server.target, retry=RetryPolicy(timeout_s=2.0)) as c:
                    c.stream(sid, pieces, on_ack=lambda ack: acked[sid].set())
            except BaseException as e:  # noqa: BLE001  (the server goes away under it: expected)
                errors.append(e)

        senders = [threading.Thread(target=send, args=(f"big-{i}",), daemon=True) for i in range(3)]
        for t in senders:
            t.start()
        assert all(e.wait(120) for e in acked.values())  # each stream has a record
        deadline = time.monotonic() + 60
        while server.metric("streamret_engine_queue_depth") < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        started = time.monotonic()
        assert server.stop() == 0, server.log()
        took = time.monotonic() - started
        for t in senders:
            t.join(30)
        last = server.log().strip().splitlines()[-1]
    assert took < 12.0, (took, server.log()[-3000:])
    assert "not applied within the drain timeout (1 s) and are not durable" in last, last
    assert "durable_seq + 1" in last, last
    with Engine.from_model("random:tiny", device="cpu", state_dir=str(tmp_path / "states")) as engine:
        for i in range(3):
            info = engine.open(f"default\x1fbig-{i}", create_if_missing=False)
            assert 1 <= info.applied_seq == info.durable_seq < len(pieces) + 1, info
