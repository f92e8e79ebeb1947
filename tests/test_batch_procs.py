"""embed_table over engine processes (streamret/batch/sub_batches.py): sub-batches run by the engines themselves give
one in-process engine's rows, in order, with its row errors, progress, stops and engine failures."""

import os
import signal
import threading
import time

import numpy as np
import pyarrow as pa
import pytest

from streamret.batch import sub_batches
from streamret.batch.arrow_table import Stop, embed_table
from streamret.batch.parquet_job import check_engine_errors
from streamret.engine import Engine
from streamret.engine.shards import ShardedEngine
from streamret.errors import Unavailable

MODEL = "random:tiny"
TOO_LARGE = 1 << 20  # the engine's max_chunk_bytes (EngineConfig's default)


def texts(n: int, size: int = 300) -> list[str]:
    return [(f"Row {i} has its own sentence. " * (1 + size * (1 + i % 5) // 150))[: size * (1 + i % 5)]
            for i in range(n)]


@pytest.fixture(scope="module")
def sharded():
    with ShardedEngine(MODEL, "cpu", procs=2) as eng:
        yield eng


@pytest.fixture(scope="module")
def plain():
    with Engine.from_model(MODEL, "cpu") as eng:
        yield eng


@pytest.fixture
def small_sub_batches(monkeypatch):
    monkeypatch.setattr(sub_batches, "SUB_BATCH_ROWS", 3)


def engine_tokens(eng: ShardedEngine) -> list[int]:
    answers, _ = eng._each("stats")
    return [a["tokens_processed"] for a in answers]


def test_rows_over_engine_processes_equal_one_engines_in_row_order(sharded, plain, small_sub_batches):
    docs = texts(23)
    docs[5] = None  # a bad row, refused before any engine
    docs[11] = "x" * (TOO_LARGE + 10)  # a row the engine refuses (its chunk is too large): the others go on
    table = pa.table({"id": [f"r{i}" for i in range(len(docs))], "text": docs})
    options = dict(summary_k=2, chunk_bytes=TOO_LARGE + 100, max_in_flight=8, window=2)
    expected = embed_table(plain, table, **options)
    before = engine_tokens(sharded)
    done_bytes, done_rows = [], []
    got = embed_table(sharded, table, on_bytes=done_bytes.append, on_row_done=lambda: done_rows.append(1), **options)
    assert got.column("id").to_pylist() == table.column("id").to_pylist()
    for name in ("tokens", "summary", "error"):
        assert got.column(name).to_pylist() == expected.column(name).to_pylist(), name
    errors = got.column("error").to_pylist()
    assert errors[5] == "text is null" and errors[11].startswith("RESOURCE_EXHAUSTED: chunk of")
    assert sum(e is not None for e in errors) == 2
    np.testing.assert_allclose(np.array(got.column("embedding").to_pylist()[:5]),
                               np.array(expected.column("embedding").to_pylist()[:5]), atol=1e-5)
    assert got.column("embedding").null_count == 2
    assert all(a > b for a, b in zip(engine_tokens(sharded), before)), "both engines ran sub-batches"
    assert sum(done_bytes) == sum(len(t.encode()) for t in docs if t is not None)
    assert len(done_rows) == len(docs) - 1  # every row sent to the engines, failed or not
    assert sum(sharded.stats()["streams"].values()) == 0  # every temporary stream is closed


def test_a_deadline_that_passed_sends_nothing(sharded):
    table = pa.table({"id": [1, 2], "text": texts(2)})
    before = sharded.stats()["tokens_processed"]
    out = embed_table(sharded, table, stop=Stop(deadline=time.monotonic() - 1))
    assert all(e.startswith("DEADLINE_EXCEEDED") for e in out.column("error").to_pylist())
    assert sharded.stats()["tokens_processed"] == before


def test_a_cancel_stops_the_sub_batches_inside_the_engines(sharded, monkeypatch):
    # every sub-batch goes out at once (2 engines x 2), each running one document at a time: a row can only
    # end CANCELLED because its engine stopped it
    monkeypatch.setattr(sub_batches, "SUB_BATCH_ROWS", 4)
    table = pa.table({"id": list(range(16)), "text": [texts(1)[0] * 40] * 16})  # 4 sub-batches of 4 rows
    stop = Stop()
    result: list[pa.Table] = []
    done_rows = []
    worker = threading.Thread(target=lambda: result.append(embed_table(
        sharded, table, max_in_flight=4, stop=stop, chunk_bytes=4096, on_row_done=lambda: done_rows.append(1))))
    before = sharded.stats()["tokens_processed"]
    worker.start()
    deadline = time.monotonic() + 60
    while sharded.stats()["tokens_processed"] == before:  # the engines are at work
        assert time.monotonic() < deadline
        time.sleep(0.01)
    stop.cancel()
    worker.join(timeout=60)
    errors = result[0].column("error").to_pylist()
    assert any(e is not None and e.startswith("CANCELLED") for e in errors)
    assert all(e is None or e.startswith("CANCELLED") for e in errors)
    assert result[0].column("embedding").null_count == sum(e is not None for e in errors)
    assert len(done_rows) == errors.count(None)  # a row the stop cut short is not done
    assert sum(sharded.stats()["streams"].values()) == 0


def test_an_engine_process_that_dies_fails_its_rows_as_unavailable_and_the_others_go_on(small_sub_batches,
                                                                                         monkeypatch):
    with ShardedEngine(MODEL, "cpu", procs=2) as eng:
        table = pa.table({"id": list(range(30)), "text": [t * 10 for t in texts(30)]})
        shard = eng._shards[0]
        victim, send = shard.process, shard.send
        killed = []

        def send_then_kill(op, *args):  # engine 0 dies with its first sub-batch in it (not yet answered: a
            fut = send(op, *args)  # sub-batch takes the engine milliseconds, the kill comes at once)
            if op == "embed_documents" and not killed:
                killed.append(victim.pid)
                os.kill(victim.pid, signal.SIGKILL)
                victim.join(timeout=30)
            return fut

        monkeypatch.setattr(shard, "send", send_then_kill)
        out = embed_table(eng, table, max_in_flight=8)
        errors = out.column("error").to_pylist()
        lost = [e for e in errors if e is not None]
        assert lost and all(e.startswith("UNAVAILABLE") and "exited" in e for e in lost)
        assert len(lost) < len(errors)  # engine 1 embedded the rest
        assert out.column("embedding").null_count == len(lost)
        with pytest.raises(Unavailable, match="failed in the engine"):
            check_engine_errors(out, "the part")


def test_encode_and_an_empty_table_over_engine_processes(sharded, plain):
    np.testing.assert_allclose(sharded.encode(texts(9)), plain.encode(texts(9)), atol=1e-5)
    empty = embed_table(sharded, pa.table({"id": pa.array([], pa.int64()), "text": pa.array([], pa.string())}))
    assert empty.num_rows == 0 and empty.schema.field("embedding").type.list_size == sharded.embed_dim


class CountingEngine:
    """The engine, counting each stream's chunks sent and not yet acknowledged (the most at once)."""

    def __init__(self, engine):
        self.engine, self.lock, self.out, self.most = engine, threading.Lock(), {}, 0

    def submit_append(self, stream_id, seq, data, flush=False):
        fut = self.engine.submit_append(stream_id, seq, data, flush)
        with self.lock:
            self.out[stream_id] = self.out.get(stream_id, 0) + 1
            self.most = max(self.most, self.out[stream_id])
        fut.add_done_callback(lambda _: self._acked(stream_id))
        return fut

    def _acked(self, stream_id):
        with self.lock:
            self.out[stream_id] -= 1

    def __getattr__(self, name):
        return getattr(self.engine, name)


@pytest.mark.parametrize("window, max_bytes, most", [(1, None, 1), (3, None, 3), (3, 2 * 64, 2)])
def test_a_document_keeps_up_to_window_chunks_in_flight_within_the_bytes_bound(plain, window, max_bytes, most):
    table = pa.table({"id": [0], "text": [texts(1)[0] * 4]})  # 1,200 bytes: 19 chunks of 64
    counting = CountingEngine(plain)
    out = embed_table(counting, table, chunk_bytes=64, window=window, max_bytes_in_flight=max_bytes)
    assert out.column("error").to_pylist() == [None]
    assert counting.most == most
    np.testing.assert_allclose(out.column("embedding").to_pylist()[0],
                               embed_table(plain, table, chunk_bytes=10_000).column("embedding").to_pylist()[0],
                               atol=1e-5)


# the dispatcher alone, over fake engine processes (no process started)

def fake_docs(n: int) -> list:
    from streamret.batch.arrow_table import _Doc

    return [_Doc(row, f"t-{row}", f"text {row}".encode() * (1 + row % 3), 64) for row in range(n)]


def answer(args) -> tuple:
    """What an engine process's embed_documents gives for a sub-batch: values derived from each row."""
    _, rows, _, texts_, _, _ = args
    vectors = np.array([[row, 1.0] for row in rows], dtype=np.float32)
    return ([10 * r for r in rows], vectors, [[f"s{r}"] for r in rows], [None] * len(rows),
            [len(t) for t in texts_], [True] * len(rows))


def test_sub_batches_answered_out_of_order_fill_their_own_rows_and_spread_over_the_engines(monkeypatch):
    monkeypatch.setattr(sub_batches, "SUB_BATCH_ROWS", 2)
    sent, held, most = [], [], {}

    def send(rank, op, args):
        assert op == "embed_documents"
        sent.append(rank)
        fut = sub_batches.Future()
        held.append((rank, fut, args))
        most[rank] = max(most.get(rank, 0), sum(1 for r, f, _ in held if r == rank and not f.done()))
        return fut

    finished = threading.Event()

    def answer_newest_first():
        while not finished.is_set():
            pending = [(r, f, a) for r, f, a in held if not f.done()]
            if pending:
                _, fut, args = pending[-1]
                fut.set_result(answer(args))
            time.sleep(0.001)

    answering = threading.Thread(target=answer_newest_first)
    answering.start()
    docs, done_bytes = fake_docs(40), []  # 20 sub-batches: more than 3 engines start at once
    sub_batches.run_sub_batches(send, 3, docs, summary_k=1, chunk_bytes=64, max_in_flight=60, max_bytes_in_flight=None,
                                group=None, stop=None, window=4, on_bytes=done_bytes.append)
    finished.set()
    answering.join()
    assert len(sent) >= 20  # sub-batches of 2 rows at most
    assert [d.tokens for d in docs] == [10 * d.row for d in docs]
    assert [d.summary for d in docs] == [[f"s{d.row}"] for d in docs]
    assert all(d.embedding[0] == d.row and d.error is None for d in docs)
    assert set(sent) == {0, 1, 2} and max(most.values()) <= sub_batches.SUB_BATCHES_PER_ENGINE
    assert sum(done_bytes) == sum(len(d.data) for d in docs)


def test_a_few_large_documents_all_start_at_once_spread_evenly_over_the_engines(monkeypatch):
    """With MAX_SUB_BATCHES_PER_ENGINE 4 (the default; set here so that the test keeps it): 32 documents, each a
    sub-batch of its own, on 12 engines: all 32 are sent before any comes back (3 or 2 an engine), not 24 and then 8
    alone on 8 engines; the bounds still hold in total. 49 of them (more than 4 an engine) still go two an engine at
    a time."""
    monkeypatch.setattr(sub_batches, "MAX_SUB_BATCHES_PER_ENGINE", 4)
    for n_docs, first_wave, most in ((32, 32, 3), (49, 24, 2)):
        sent, held = [], []

        def send(rank, op, args, sent=sent, held=held):
            sent.append(rank)
            fut = sub_batches.Future()  # nothing answers until the first wave is counted
            held.append((fut, args))
            return fut

        docs = [sub_batches._Doc(i, f"t{i}", b"x" * (900 << 10), 64 << 10) for i in range(n_docs)]
        runner = threading.Thread(target=sub_batches.run_sub_batches, args=(send, 12, docs), kwargs=dict(
            summary_k=0, chunk_bytes=64 << 10, max_in_flight=96, max_bytes_in_flight=64 << 20, group=None,
            stop=None, window=4))
        runner.start()
        try:
            deadline = time.monotonic() + 10
            while len(sent) < first_wave and time.monotonic() < deadline:
                time.sleep(0.005)
            time.sleep(0.05)  # (no more may follow)
            assert len(sent) == first_wave
            assert sorted(sent.count(rank) for rank in range(12))[-1] == most
            if n_docs == 32:
                assert sorted(sent.count(rank) for rank in range(12)) == [2] * 4 + [3] * 8
            assert all(a[5]["max_in_flight"] * first_wave <= 96 for _, a in held)
            assert all(a[5]["max_bytes_in_flight"] * first_wave <= 64 << 20 for _, a in held)
        finally:  # answer everything, the late sub-batches too, so that the call returns
            while runner.is_alive():
                for fut, args in list(held):
                    if not fut.done():
                        fut.set_result(answer(args))
                runner.join(0.05)
        assert all(d.error is None and d.embedding[0] == d.row for d in docs)


def test_when_every_engine_is_gone_the_rows_left_fail_as_unavailable():
    def send(rank, op, args):  # each engine's sub-batches fail as its process exits (before it is noticed)
        fut = sub_batches.Future()
        fut.set_exception(Unavailable(f"engine process {rank} exited (code -9) and is being restarted"))
        return fut

    docs = fake_docs(12)
    sub_batches.run_sub_batches(send, 2, docs, summary_k=0, chunk_bytes=64, max_in_flight=4, max_bytes_in_flight=None,
                                group=None, stop=None, window=4)
    assert all(d.error.startswith("UNAVAILABLE: engine process") and d.embedding is None for d in docs)


@pytest.mark.parametrize("max_in_flight, max_bytes", [(3, None), (60, 2)])
def test_bounds_smaller_than_the_sub_batch_slots_still_hold_in_total(max_in_flight, max_bytes):
    """Rows (or bytes) in flight below 2 x engines: fewer sub-batches run at once, each with its share, so the
    batch's bounds hold in total (not max(1, bound // slots) in each of all the slots)."""
    running, most, options = [], [0], []

    def send(rank, op, args):
        fut = sub_batches.Future()
        running.append((fut, args))
        options.append(args[5])
        most[0] = max(most[0], sum(1 for f, _ in running if not f.done()))
        return fut

    finished = threading.Event()

    def answer_oldest():
        while not finished.is_set():
            pending = [(f, a) for f, a in running if not f.done()]
            if pending:
                pending[0][0].set_result(answer(pending[0][1]))
            time.sleep(0.001)

    answering = threading.Thread(target=answer_oldest)
    answering.start()
    docs = fake_docs(24)
    sub_batches.run_sub_batches(send, 4, docs, summary_k=0, chunk_bytes=64, max_in_flight=max_in_flight,
                                max_bytes_in_flight=max_bytes, group=None, stop=None, window=4)
    finished.set()
    answering.join()
    assert all(d.error is None for d in docs)
    slots = min(max_in_flight, max_bytes or 8)
    assert most[0] <= slots
    assert all(o["max_in_flight"] * slots <= max_in_flight for o in options)
    if max_bytes is not None:
        assert all(o["max_bytes_in_flight"] * slots <= max_bytes for o in options)


def test_sub_batches_shrink_towards_the_end_and_keep_every_row_once_in_order():
    """Guided sizes: a sub-batch is at most 1 / (2 x slots) of what is left (at least SUB_BATCH_MIN_ROWS rows),
    so the last ones are small and the engines finish together; the cap still holds and no row is lost."""
    docs = fake_docs(2000)
    batches = list(sub_batches.cut(docs, 1 << 30, 334, slots=24))
    sizes = [len(b) for b in batches]
    assert [d.row for b in batches for d in b] == [d.row for d in docs]
    assert sizes[0] == -(-2000 // 48) and max(sizes) <= 334
    assert all(a >= b for a, b in zip(sizes, sizes[1:]))
    assert sizes[-2] == sub_batches.SUB_BATCH_MIN_ROWS
    # by bytes as well: a large document is still a sub-batch of its own
    big = [sub_batches._Doc(0, "t0", b"x" * (1 << 20), 64), *fake_docs(40)[1:]]
    cuts = list(sub_batches.cut(big, 1 << 20, 512, slots=4))
    assert [len(b) for b in cuts][0] == 1 and sum(len(b) for b in cuts) == 40


def test_an_engine_process_runs_sub_batches_without_pyarrow():
    """What an engine process imports to run a batch's rows (sub_batches.py, runner.py) leaves pyarrow out:
    importing it held each engine process's first sub-batch of a job (bench/RESULTS.md, session 26).
    The package's public names still load on first use."""
    import subprocess
    import sys

    code = ("import sys; import streamret.batch.sub_batches; assert 'pyarrow' not in sys.modules, 'pyarrow'; "
            "from streamret.batch import embed_parquet, embed_table; assert 'pyarrow' in sys.modules; "
            "import streamret.batch as b; print(b.Embedder.__name__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Embedder"
