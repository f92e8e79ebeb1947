"""ShardedEngine: engines in processes of their own, streams sharded over them, behave as one Engine."""

import os
import signal
import time

import numpy as np
import pytest

from streamret.engine import Engine, EngineConfig
from streamret.engine.api import model_device
from streamret.engine.bounds import QueueBounds
from streamret.engine.shards import ShardedEngine, merge_stats, shard_of
from streamret.errors import InvalidArgument, NotFound, SeqGap, TooBusy, Unavailable

MODEL = "random:tiny"
TEXT = [f"Stream {i} says a few things. Then it says more, about item {i}. " * 3 for i in range(8)]


def chunks(i: int, n: int = 3) -> list[bytes]:
    data = (TEXT[i] * n).encode()
    step = len(data) // n
    return [data[k * step : (k + 1) * step if k < n - 1 else len(data)] for k in range(n)]


def ids_on_each_shard(procs: int, per_shard: int = 2) -> list[str]:
    out, counts, i = [], [0] * procs, 0
    while min(counts) < per_shard:
        sid = f"s{i}"
        if counts[shard_of(sid, procs)] < per_shard:
            counts[shard_of(sid, procs)] += 1
            out.append(sid)
        i += 1
    return out


@pytest.fixture(scope="module")
def sharded():
    with ShardedEngine(MODEL, "cpu", procs=2, config=EngineConfig(max_pending_chunks_per_stream=4)) as eng:
        yield eng


def test_shard_of_is_stable_and_spreads():
    assert shard_of("doc-1", 4) == shard_of("doc-1", 4)
    assert {shard_of(f"doc-{i}", 4) for i in range(64)} == {0, 1, 2, 3}
    assert shard_of("x", 1) == 0


def test_streams_on_every_shard_give_the_embeddings_of_one_engine(sharded):
    sids = ids_on_each_shard(2)
    with Engine.from_model(MODEL, "cpu") as plain:
        futures = []
        for eng in (sharded, plain):
            for k, sid in enumerate(sids):
                for seq, c in enumerate(chunks(k), start=1):
                    futures.append(eng.submit_append(sid, seq, c))
        acks = [f.result(timeout=60) for f in futures]
        assert all(a.applied_seq >= a.seq for a in acks) and sharded.fingerprint == plain.fingerprint
        for sid in sids:
            np.testing.assert_allclose(sharded.embedding(sid), plain.embedding(sid), atol=1e-5)
            assert sharded.info(sid).applied_seq == 3
            assert [s.text for s in sharded.segments(sid)] == [s.text for s in plain.segments(sid)]
        stats = sharded.stats()
        assert stats["engine_procs"] == 2
        assert model_device(sharded) == model_device(plain) == "cpu"  # (the batch job's part size reads it)
        assert stats["tokens_processed"] >= sum(plain.info(sid).tokens for sid in sids)
    for sid in sids:
        sharded.close(sid)


def test_errors_cross_with_their_type_and_fields(sharded):
    sid = ids_on_each_shard(2, 1)[1]
    with pytest.raises(NotFound):
        sharded.embedding("never-made")
    sharded.open(sid)
    gap = sharded.submit_append(sid, 5, b"a gap")  # errors other than a full queue come with the future
    with pytest.raises(SeqGap) as e:
        gap.result(timeout=30)
    assert (e.value.got, e.value.expected) == (5, 1)
    assert sharded.append(sid, 1, b"now in order").applied_seq == 1
    sharded.close(sid)


def test_a_full_queue_is_refused_at_once_as_too_busy(sharded):
    sid = "busy"
    sharded.open(sid)
    futures, refused = [], None
    for seq in range(1, 41):  # sent much faster than an engine step acks them: the bound (4 waiting) is reached
        try:
            futures.append(sharded.submit_append(sid, seq, b"word " * 50))
        except TooBusy as e:
            refused = e
            break
    assert refused is not None and "wait for acks" in str(refused), "never refused"
    assert 4 <= len(futures) < 40
    for f in futures:
        f.result(timeout=30)
    nxt = len(futures) + 1
    assert sharded.append(sid, nxt, b"one more").applied_seq == nxt  # acks released the room
    sharded.close(sid)


def test_held_chunks_wait_for_their_release_and_stay_ahead_of_later_calls(sharded):
    """submit_append_to with hold: nothing reaches the engine until release_held(), or until another call to
    the same engine, which then goes after them (a reordered chunk would be refused with a seq gap)."""
    import queue

    arrived: queue.SimpleQueue = queue.SimpleQueue()

    def arrive(pairs):
        for pair in pairs:
            arrived.put(pair)

    held, later = ids_on_each_shard(2, per_shard=1)  # one stream on each engine
    for sid in (held, later):
        sharded.open(sid)
    sharded.submit_append_to(arrive, "h1", held, 1, chunks(0)[0], hold=True)
    sharded.submit_append_to(arrive, "l1", later, 1, chunks(1)[0], hold=True)
    time.sleep(0.5)
    assert arrived.empty(), "a held chunk was sent before its release"
    sharded.submit_append_to(arrive, "h2", held, 2, chunks(0)[1])  # not held: goes after h1, to h1's engine
    got = dict(arrived.get(timeout=30) for _ in range(2))
    assert got["h1"][1] is None and got["h2"][1] is None, got
    assert (got["h1"][0].seq, got["h2"][0].seq) == (1, 2)
    time.sleep(0.5)
    assert arrived.empty(), "the other engine's held chunk went without a release"
    sharded.release_held()
    key, (ack, error) = arrived.get(timeout=30)
    assert (key, error, ack.seq) == ("l1", None, 1)
    for sid in (held, later):
        sharded.close(sid)


def test_an_argument_that_cannot_be_sent_fails_alone(sharded):
    sid = "unsendable"
    sharded.open(sid)
    with pytest.raises(InvalidArgument, match="cannot be sent to an engine process"):
        sharded.summarize(sid, k=lambda: 1)  # a lambda does not pickle: that call fails, the link does not
    assert sharded.append(sid, 1, memoryview(b"a memoryview chunk. ")).applied_seq == 1
    sharded.close(sid)


def test_fork_and_import_between_shards(sharded):
    a, b = ids_on_each_shard(2, 1)
    for seq, c in enumerate(chunks(0), start=1):
        sharded.append(a, seq, c)
    assert shard_of(a, 2) != shard_of(b, 2)
    info = sharded.fork(a, b)  # an export from one engine, an import into the other
    assert info.applied_seq == 3
    np.testing.assert_array_equal(sharded.embedding(a), sharded.embedding(b))
    record = sharded.export_state(a)
    sharded.import_state("copy-of-a", record)
    np.testing.assert_array_equal(sharded.embedding("copy-of-a"), sharded.embedding(a))
    for sid in (a, b, "copy-of-a"):
        sharded.close(sid)


def test_state_dir_is_shared_so_the_engine_count_may_change(tmp_path):
    sids = ids_on_each_shard(3, 1)
    with ShardedEngine(MODEL, "cpu", state_dir=str(tmp_path), procs=3) as eng:
        for k, sid in enumerate(sids):
            for seq, c in enumerate(chunks(k), start=1):
                eng.append(sid, seq, c)
        before = {sid: eng.embedding(sid) for sid in sids}
        report = eng.checkpoint_all()
        assert report.streams == 3 and report.everything_durable
    with ShardedEngine(MODEL, "cpu", state_dir=str(tmp_path), procs=2) as eng:
        for sid in sids:
            assert eng.info(sid).durable_seq == 3
            np.testing.assert_allclose(eng.embedding(sid), before[sid], atol=1e-6)
    with pytest.raises(Unavailable, match="the engine was shut down"):  # not "exited ... being restarted"
        eng.info(sids[0])


def test_a_dead_engine_process_fails_its_streams_spares_the_others_and_is_restarted(tmp_path):
    with ShardedEngine(MODEL, "cpu", state_dir=str(tmp_path), procs=2,
                       config=EngineConfig(durable_every_chunks=1)) as eng:
        a, b = ids_on_each_shard(2, 1)
        eng.append(a, 1, b"alive. ")
        eng.append(b, 1, b"alive too. ")
        before = eng.embedding(a)
        victim = eng._shards[shard_of(a, 2)].process
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(timeout=30)
        deadline = time.monotonic() + 30
        while True:  # the reader notices the closed pipe: the stream's calls fail as resendable meanwhile
            try:
                eng.info(a)
            except Unavailable as e:
                assert "exited" in str(e) and "durable_seq" in str(e)
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert eng.append(b, 2, b"still served. ").applied_seq == 2
        stats = eng.stats()  # the live engine's counters; the whole-engine calls do not fail with one down
        assert stats["engine_procs_down"] in (0, 1) and stats["tokens_processed"] > 0
        deadline = time.monotonic() + 120
        while True:  # a new engine process takes the rank; the stream reloads from its durable record
            try:
                info = eng.info(a)
                break
            except Unavailable:
                assert time.monotonic() < deadline, "the engine process was not restarted"
                time.sleep(0.2)
        assert info.applied_seq == info.durable_seq == 1
        np.testing.assert_allclose(eng.embedding(a), before, atol=1e-6)
        assert eng.append(a, 2, b"and on. ").applied_seq == 2
        assert eng._shards[shard_of(a, 2)].process.pid != victim.pid


def test_engine_processes_leave_signals_to_the_server_process(sharded):
    sid = "signalled"
    for pid in sharded.pids:  # a terminal's Ctrl-C or systemd's SIGTERM reaches the whole process group
        os.kill(pid, signal.SIGINT)
        os.kill(pid, signal.SIGTERM)
    time.sleep(0.5)
    assert sharded.append(sid, 1, b"still here. ").applied_seq == 1
    sharded.close(sid)


def test_merge_stats_adds_counts_and_joins_samples():
    a = {"steps": 2, "streams": {"device": 1}, "step_streams_buckets": [1, 0], "recent_step_tokens": [5],
         "durable_writable": True, "loop_parts_seconds": {"lock": 0.5}}
    b = {"steps": 3, "streams": {"device": 2}, "step_streams_buckets": [0, 4], "recent_step_tokens": [7, 8],
         "durable_writable": None, "loop_parts_seconds": {"lock": 0.25}}
    assert merge_stats([a, b]) == {"steps": 5, "streams": {"device": 3}, "step_streams_buckets": [1, 4],
                                   "recent_step_tokens": [5, 7, 8], "durable_writable": None,
                                   "loop_parts_seconds": {"lock": 0.75}}


def test_merge_stats_adds_the_tokenize_calls_histogram_bucket_by_bucket():
    a = {"tokenize_calls": 3, "tokenize_call_items_buckets": [1, 2, 0]}
    b = {"tokenize_calls": 1, "tokenize_call_items_buckets": [0, 0, 1]}
    assert merge_stats([a, b]) == {"tokenize_calls": 4, "tokenize_call_items_buckets": [1, 2, 1]}


def test_queue_bounds_count_per_stream_and_in_total():
    q = QueueBounds(max_chunks_per_stream=2, max_bytes_per_stream=100, max_chunks=3, max_bytes=1000)
    q.reserve("a", 60)
    with pytest.raises(TooBusy, match="stream 'a'"):
        q.reserve("a", 50)  # bytes per stream
    q.reserve("a", 40)
    with pytest.raises(TooBusy, match="stream 'a'"):
        q.reserve("a", 0)  # chunks per stream
    q.reserve("b", 1)
    with pytest.raises(TooBusy, match="the engine has 3 chunks"):
        q.reserve("c", 1)  # in total
    q.release("a", 60)
    q.reserve("c", 1)
    assert (q.chunks, q.bytes, q.waiting("a")) == (3, 42, 1)


def test_procs_must_be_a_positive_int():
    with pytest.raises(ValueError, match="procs must be an int >= 1"):
        ShardedEngine(MODEL, "cpu", procs=0)


@pytest.mark.parametrize("gib, cores, want", [(79.2, 16, 9), (139.8, 16, 12), (79.2, 8, 6), (16, 64, 2), (4, 16, 1)])
def test_auto_engine_procs_fit_the_device_memory(monkeypatch, gib, cores, want):
    """auto on a GPU: one engine per 8 GiB (about 7 are an engine's with the default model: 12 ran out of an
    H100's 79.2 GiB), per 4/3 cores, at most 12."""
    import types

    import torch

    from streamret.engine import shards
    from streamret.model import spec

    monkeypatch.setattr(spec, "resolve_device", lambda device: torch.device("cuda", 0))
    memory = int(gib * 2**30)
    props = types.SimpleNamespace(total_memory=memory)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: props)
    monkeypatch.setattr(shards, "usable_cores", lambda: cores)
    assert shards.engine_procs("auto") == want
    assert want * shards.ENGINE_DEVICE_BYTES <= memory or want == 1


def test_the_batch_job_over_engine_processes_writes_what_one_engine_writes(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from streamret.batch import embed_parquet

    # (no bad row here: a null embedding in the output makes pyarrow 25's dataset reader fail; test_batch.py
    # covers bad rows)
    texts = [t * (1 + i % 4) for i, t in enumerate(TEXT * 3)]
    pq.write_table(pa.table({"id": list(range(len(texts))), "text": texts}), tmp_path / "c.parquet")
    outs = {}
    for procs in (1, 2):
        report = embed_parquet(str(tmp_path / "c.parquet"), str(tmp_path / f"out{procs}"), model=MODEL,
                               device="cpu", engine_procs=procs, chunk_bytes=64, progress=False)
        assert (report.documents, report.errors) == (len(texts), 0)
        outs[procs] = pq.read_table(tmp_path / f"out{procs}").sort_by("id").to_pydict()
    one, two = outs[1], outs[2]
    assert one["summary"] == two["summary"] and one["error"] == two["error"] and one["tokens"] == two["tokens"]
    np.testing.assert_allclose(np.array(one["embedding"]), np.array(two["embedding"]), atol=1e-5)
    with pytest.raises(InvalidArgument, match="engine processes must be an int >= 1 or 'auto'"):
        embed_parquet(str(tmp_path / "c.parquet"), str(tmp_path / "bad"), model=MODEL, device="cpu",
                      engine_procs="many", progress=False)


def test_an_engine_that_cannot_start_fails_the_start_with_its_error(tmp_path):
    started = time.monotonic()
    with pytest.raises(Exception, match="no-such-model") as e:
        ShardedEngine(str(tmp_path / "no-such-model"), "cpu", procs=2)
    assert not isinstance(e.value, Unavailable)  # the engine's own error, not a lost pipe
    assert time.monotonic() - started < 60


def test_chunks_of_a_stream_loaded_from_its_record_stay_in_order(tmp_path):
    """A stream in memory nowhere is loaded off the engine's reader thread (its chunks wait in a lane of their
    own meanwhile): the chunks sent before it is loaded still apply in order, once each."""
    with (ShardedEngine(MODEL, "cpu", state_dir=str(tmp_path), procs=2,
                        config=EngineConfig(durable_every_chunks=1)) as eng,
          Engine.from_model(MODEL, "cpu") as plain):
        parts = chunks(3, n=6)
        eng.append("cold", 1, parts[0])
        eng.evict("cold")  # its state now lives only in its record
        futures = [eng.submit_append("cold", seq, c) for seq, c in enumerate(parts[1:], start=2)]
        assert eng.append("warm", 1, b"another stream meanwhile. ").applied_seq == 1
        acks = [f.result(timeout=60) for f in futures]
        assert [a.seq for a in acks] == [2, 3, 4, 5, 6] and not any(a.duplicate for a in acks)
        for seq, c in enumerate(parts, start=1):
            plain.append("cold", seq, c)
        np.testing.assert_allclose(eng.embedding("cold"), plain.embedding("cold"), atol=1e-5)
        assert eng.info("cold").applied_seq == 6


def test_an_engine_that_answered_its_shutdown_but_does_not_exit_is_killed_after_5_s(caplog):
    """Its streams are written once it answered: it gets 5 s to exit, not 30, then it is killed with a warning."""
    import multiprocessing as mp
    import queue
    import threading

    proc = mp.get_context("spawn").Process(target=time.sleep, args=(120,))
    proc.start()

    class Shard:
        rank, process = 0, proc

        def close(self) -> None:
            pass

    eng = ShardedEngine.__new__(ShardedEngine)
    relay = threading.Thread(target=lambda: None)
    relay.start()
    eng._shards, eng._logs, eng._logs_end, eng._log_thread = [Shard()], queue.SimpleQueue(), threading.Event(), relay
    t0 = time.monotonic()
    eng._stop_processes(done={0})
    assert not proc.is_alive() and time.monotonic() - t0 < 15
    assert "answered its shutdown" in caplog.text


def test_a_log_queue_lock_held_by_a_killed_engine_holds_up_neither_shutdown_nor_exit():
    """An engine process killed while it logged leaves the log queue's write lock held for good. Stopping the
    log relay must not need that lock: a put from this process would start a feeder thread that blocks on it,
    and the interpreter's exit joins that thread (a CI run hung there after every test had passed)."""
    eng = ShardedEngine(MODEL, "cpu", procs=1)
    eng._logs._wlock.acquire()  # as the killed engine process left it
    started = time.monotonic()
    eng.shutdown()
    assert time.monotonic() - started < 30  # (the engine's own last log lines block: it is killed after 5 s)
    assert eng._logs._thread is None  # this process never wrote to the queue: nothing for its exit to wait on
    assert not eng._log_thread.is_alive()


def test_switch_interval_from_the_environment(monkeypatch):
    """STREAMRET_SWITCH_INTERVAL_MS sets an engine process's switch interval; a bad value names itself and the fix."""
    import sys

    from streamret.engine.engine_process import _switch_interval_from_env

    before = sys.getswitchinterval()
    try:
        monkeypatch.setenv("STREAMRET_SWITCH_INTERVAL_MS", "0.5")
        _switch_interval_from_env()
        assert sys.getswitchinterval() == pytest.approx(0.0005)
        for bad in ("0", "-1", "fast", "5000"):
            monkeypatch.setenv("STREAMRET_SWITCH_INTERVAL_MS", bad)
            with pytest.raises(ValueError, match=f"STREAMRET_SWITCH_INTERVAL_MS={bad!r}.*milliseconds"):
                _switch_interval_from_env()
    finally:
        sys.setswitchinterval(before)


def test_power_of_two_buckets_count_1_2_3_to_4_and_so_on_up_to_the_top():
    from streamret.engine.histogram import power_of_two_bucket

    assert [power_of_two_bucket(n, 4) for n in (0, 1, 2, 3, 4, 5, 8, 9, 16, 1000)] == [0, 0, 1, 2, 2, 3, 3, 4, 4, 4]
