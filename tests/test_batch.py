"""Batch job on a small Parquet corpus (local mode): output rows, equality with the engine, resume, errors."""

import os
import random
import re
import threading
from concurrent.futures import Future

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from streamret import cli
from streamret.batch import embed_parquet
from streamret.batch import parquet_job as job
from streamret.batch.arrow_table import embed_table
from streamret.batch.parts import FINGERPRINT_KEY, PartEncoder, PartFolder
from streamret.engine import Engine
from streamret.engine.api import model_device
from streamret.errors import InvalidArgument, ModelMismatch, Unavailable

CHUNK_BYTES = 4093  # odd, so chunk cuts fall inside multi-byte characters
ROWS_PER_PART = 4
OPTIONS = dict(chunk_bytes=CHUNK_BYTES, rows_per_part=ROWS_PER_PART, summary_k=3, progress=False)


def book(n_bytes: int, seed: int = 0) -> str:
    """Sentences of ASCII and multi-byte words (2, 3 and 4 UTF-8 bytes), about n_bytes long."""
    rng = random.Random(seed)
    words = ["river", "stone", "naïve", "café", "日本語", "東京", "🙂", "𝄞music", "Ωmega", "light"]
    out, size = [], 0
    while size < n_bytes:
        sentence = " ".join(rng.choice(words) for _ in range(rng.randint(4, 12))).capitalize() + rng.choice(".!?")
        out.append(sentence)
        size += len(sentence.encode()) + 1
    return " ".join(out)


HUGE = book(100_000, seed=1)  # ~100 KB: 25 chunks of CHUNK_BYTES, many engine steps
SHORT = [book(n, seed=10 + i) for i, n in enumerate([40, 300, 900, 2500, 5000, 60, 1200])]
GOOD = {"huge": HUGE, "multibyte": "naïve café 日本語のテキスト。 Emoji 🙂🚀 and 𝄞 clefs! Done.",
        "plain": "Hello world. This is a short document.", **{f"s{i}": t for i, t in enumerate(SHORT)},
        "binary-ok": "UTF-8 bytes in a binary column. Fine."}
ERRORS = {"null": "text is null", "empty": "text is empty", "bad-utf8": "text is not UTF-8 text: byte 0xff at offset 3",
          "wrong-type": "has type int64"}


def write_corpus(folder) -> list[str]:
    """Three files (string text, binary text, integer text): the ids in corpus order."""
    os.makedirs(folder, exist_ok=True)
    a_ids = ["plain", "null", "s0", "huge", "s1", "empty", "multibyte", "s2", "s3", "s4", "s5", "s6"]
    a_texts = [GOOD.get(i) if i != "empty" else "" for i in a_ids]
    pq.write_table(pa.table({"id": a_ids, "text": a_texts, "other": list(range(len(a_ids)))}),
                   f"{folder}/a.parquet", row_group_size=5)
    pq.write_table(pa.table({"id": ["binary-ok", "bad-utf8"],
                             "text": pa.array([GOOD["binary-ok"].encode(), b"ok \xff\xfe bytes"], pa.binary())}),
                   f"{folder}/b.parquet")
    pq.write_table(pa.table({"id": ["wrong-type"], "text": [7]}), f"{folder}/c.parquet")
    os.makedirs(f"{folder}/_temporary")  # writers' side files are not data
    pq.write_table(pa.table({"id": ["junk"], "text": ["x"]}), f"{folder}/_temporary/junk.parquet")
    return a_ids + ["binary-ok", "bad-utf8", "wrong-type"]


@pytest.fixture(scope="module")
def engine():
    eng = Engine.from_model("random:tiny", device="cpu")
    yield eng
    eng.shutdown(checkpoint=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    return str(folder), write_corpus(folder)


@pytest.fixture(scope="module")
def uninterrupted(engine, corpus, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("out") / "embeddings")
    report = embed_parquet(corpus[0], out, engine=engine, **OPTIONS)
    return out, report


def rows(table: pa.Table) -> list[dict]:
    return table.drop_columns(["embedding"]).to_pylist()


def embeddings(table: pa.Table) -> np.ndarray:
    return np.array([e if e is not None else [np.nan] * 64 for e in table.column("embedding").to_pylist()])


def assert_same_output(a: pa.Table, b: pa.Table) -> None:
    assert a.schema.equals(b.schema, check_metadata=True)
    assert rows(a) == rows(b)
    np.testing.assert_allclose(embeddings(a), embeddings(b), rtol=0, atol=1e-6)


def test_one_output_row_per_input_row_with_errors_recorded(uninterrupted, corpus, engine):
    out, report = uninterrupted
    table = pq.read_table(out)
    ids = corpus[1]
    assert table.column("id").to_pylist() == ids  # corpus order, the _temporary file ignored
    dim = engine.model.config.out_embed_dim
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), dim)
    assert table.schema.field("summary").type == pa.list_(pa.string())
    assert table.schema.field("tokens").type == pa.int64() and table.schema.field("error").type == pa.string()
    assert table.schema.metadata[FINGERPRINT_KEY].decode() == engine.fingerprint
    for row in table.to_pylist():
        if row["id"] in ERRORS:
            assert ERRORS[row["id"]] in row["error"]
            assert row["embedding"] is None and row["tokens"] is None and row["summary"] is None
        else:
            assert row["error"] is None
            assert row["tokens"] == len(GOOD[row["id"]].encode())  # byte tokenizer: one token per byte
            assert abs(np.linalg.norm(row["embedding"]) - 1) < 1e-5
            assert 1 <= len(row["summary"]) <= 3 and all(s in GOOD[row["id"]] for s in row["summary"])
    assert (report.documents, report.errors, report.skipped) == (len(ids), len(ERRORS), 0)
    assert report.tokens == sum(len(t.encode()) for t in GOOD.values())
    assert sorted(os.listdir(out)) == [f"part-{i:06d}.parquet" for i in range(report.parts)]
    assert report.parts == 4  # 4 + 4 + 4 rows of a.parquet, then 3 more (parts span files)


def test_the_column_check_flags_the_rows_that_a_row_by_row_check_fails_with_the_same_messages():
    """_texts checks a text column with whole-chunk work and only the rows it flags one by one: its rows must be
    those of checking every row (bytes, or the row's error) on tables of many chunks, sliced ones and both
    column types, with NUL bytes, bad UTF-8 (a cut character too), nulls and empty texts mixed in."""
    from streamret.batch.arrow_table import _texts
    from streamret.textcheck import InvalidText, check_bytes

    def one_by_one(table: pa.Table) -> list:
        out = []
        for value in table.column("text").cast(pa.large_binary()).to_pylist():
            try:
                out.append("text is null" if value is None else (check_bytes(value, "text") and value))
            except InvalidText as e:
                out.append(str(e))
        return out

    rng = random.Random(5)
    values = [b"", b"hello", "naïve café".encode(), b"a\x00b", b"\x00", b"ok \xff bytes", "日本".encode()[:-1],
              b"fine text.", None]
    flagged = set()
    for _ in range(300):
        chunks = [pa.array([rng.choice(values) for _ in range(rng.randint(0, 6))], pa.large_binary())
                  for _ in range(rng.randint(1, 4))]
        table = pa.table({"text": pa.chunked_array(chunks, pa.large_binary())})
        if len(table) > 2 and rng.random() < 0.5:
            table = table.slice(1, len(table) - 2)
        if rng.random() < 0.3:
            try:
                table = pa.table({"text": table.column("text").cast(pa.large_string())})
            except pa.ArrowInvalid:
                pass  # (not all UTF-8: stays binary)
        got = _texts(table, "text")
        assert got == one_by_one(table)
        flagged.update(v if isinstance(v, str) else "ok" for v in got)
    assert {"ok", "text is null", "text is empty: nothing to embed"} <= flagged
    assert any("NUL byte" in v for v in flagged) and any("not UTF-8" in v for v in flagged)


def test_rows_on_an_engine_in_this_process_make_their_calls_on_the_callers_thread(engine):
    """With an Engine in this process the runner opens, queries and closes on its own thread (no call threads
    taking the engine lock from the step loop), and gives what 16 call threads give."""
    table = pa.table({"id": list(GOOD), "text": list(GOOD.values())})
    threads_seen = []
    inline = embed_table(engine, table, summary_k=2, chunk_bytes=CHUNK_BYTES,
                         on_row_done=lambda: threads_seen.append({t.name for t in threading.enumerate()}))
    assert threads_seen and not any(n.startswith("streamret-batch-call") for seen in threads_seen for n in seen)
    pooled = embed_table(engine, table, summary_k=2, chunk_bytes=CHUNK_BYTES, call_threads=16)
    assert_same_output(inline, pooled)
    assert sum(engine.stats()["streams"].values()) == 0  # every temporary closed


def test_a_row_whose_inline_open_or_results_call_fails_gets_its_error_and_the_others_go_on(engine, monkeypatch):
    """The runner's calls made on its own thread (an Engine in this process) end without Futures (runner._Ended): an
    open that raises fails its row alone, as do results that raise, with the engine's message naming the row, and
    every temporary stream that was opened is closed."""
    table = pa.table({"id": [f"r{i}" for i in range(6)], "text": [f"Row {i} has a sentence. And another." for i in
                                                                   range(6)]})
    real_open, real_summarize = engine.open, engine.summarize

    def open_(stream_id, **kw):
        if stream_id.endswith("-2"):
            raise InvalidArgument(f"no room for {stream_id!r}")
        return real_open(stream_id, **kw)

    def summarize(stream_id, **kw):
        if stream_id.endswith("-4"):
            raise InvalidArgument(f"cannot summarize {stream_id!r}")
        return real_summarize(stream_id, **kw)

    monkeypatch.setattr(engine, "open", open_)
    monkeypatch.setattr(engine, "summarize", summarize)
    out = embed_table(engine, table, summary_k=2, chunk_bytes=CHUNK_BYTES, stream_prefix="inline-")
    errors = out.column("error").to_pylist()
    assert errors[2] == "INVALID_ARGUMENT: no room for row 2"
    assert errors[4] == "INVALID_ARGUMENT: cannot summarize row 4"
    assert [e for i, e in enumerate(errors) if i not in (2, 4)] == [None] * 4
    assert all(v is not None for i, v in enumerate(out.column("embedding").to_pylist()) if i not in (2, 4))
    assert sum(engine.stats()["streams"].values()) == 0  # every temporary closed, the failed results' one too


def test_the_report_times_the_job_from_the_model_ready_and_counts_its_own_steps(uninterrupted, corpus, engine,
                                                                                 tmp_path):
    again = embed_parquet(corpus[0], str(tmp_path / "again"), engine=engine, **OPTIONS)  # the engine has run before
    for report in (uninterrupted[1], again):
        assert 0 < report.seconds <= report.total_seconds
        m = re.match(r"engine: ([\d,]+) steps of ([\d,]+) tokens", report.detail)
        steps, per_step = (int(g.replace(",", "")) for g in m.groups())
        assert abs(steps * per_step - report.tokens) <= steps  # this job's steps only (the average is rounded)


def test_embeddings_equal_the_engines_per_document_embeddings(uninterrupted, engine):
    """Each row is what the engine gives that document streamed on its own (here in one chunk)."""
    table = pq.read_table(uninterrupted[0])
    for row in table.to_pylist():
        if row["error"] is not None:
            continue
        sid = f"reference-{row['id']}"
        ack = engine.append(sid, 1, GOOD[row["id"]].encode(), flush=True)
        assert row["tokens"] == ack.tokens
        np.testing.assert_allclose(row["embedding"], engine.embedding(sid), rtol=0, atol=1e-5)
        assert row["summary"] == [s.text for s in engine.summarize(sid, k=3).segments]
        engine.close(sid)


def test_resume_after_a_crash_gives_the_uninterrupted_output(uninterrupted, corpus, engine, tmp_path, monkeypatch):
    out = str(tmp_path / "embeddings")
    real_commit, commits = PartFolder.commit, []

    def crash_after_two(self, index, table):
        if len(commits) == 2:
            raise KeyboardInterrupt  # the process dies while parts 2 and 3 are in flight
        commits.append(index)
        return real_commit(self, index, table)

    monkeypatch.setattr(PartFolder, "commit", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        embed_parquet(corpus[0], out, engine=engine, **OPTIONS)
    monkeypatch.setattr(PartFolder, "commit", real_commit)
    assert sorted(os.listdir(out)) == ["part-000000.parquet", "part-000001.parquet"]
    with open(f"{out}/.part-000002.parquet.0123.tmp", "wb") as f:  # a commit cut short by the crash
        f.write(b"partial")

    report = embed_parquet(corpus[0], out, engine=engine, **OPTIONS)
    assert report.skipped == 2 * ROWS_PER_PART and report.documents == len(corpus[1]) - 2 * ROWS_PER_PART
    assert sorted(os.listdir(out)) == sorted(os.listdir(uninterrupted[0]))  # same files, temp one gone
    for name in sorted(os.listdir(out)):
        assert_same_output(pq.read_table(f"{out}/{name}"), pq.read_table(f"{uninterrupted[0]}/{name}"))

    again = embed_parquet(corpus[0], out, engine=engine, **OPTIONS)
    assert (again.documents, again.skipped, again.parts) == (0, len(corpus[1]), 0)


def test_fsspec_urls_and_globs(engine, tmp_path):
    import fsspec

    fs = fsspec.filesystem("memory")
    for name, ids in (("x1.parquet", ["m1", "m2"]), ("x2.parquet", ["m3"]), ("notes.txt", None)):
        with fs.open(f"/batchtest/in/{name}", "wb") as f:
            if ids is None:
                f.write(b"not parquet")
            else:
                pq.write_table(pa.table({"doc": ids, "body": [f"Text of {i}. More." for i in ids]}), f)
    try:
        report = embed_parquet("memory://batchtest/in/x*.parquet", "memory://batchtest/out", engine=engine,
                               id_column="doc", text_column="body", summary_k=1, progress=False)
        assert report.documents == 3 and report.errors == 0
        assert fs.ls("/batchtest/out", detail=False) == ["/batchtest/out/part-000000.parquet"]
        with fs.open("/batchtest/out/part-000000.parquet", "rb") as f:
            table = pq.read_table(f)
        assert table.column("id").to_pylist() == ["m1", "m2", "m3"]
        assert table.column("summary").to_pylist() == [["Text of m1."], ["Text of m2."], ["Text of m3."]]
        # a folder: only its *.parquet files are data
        assert embed_parquet("memory://batchtest/in", "memory://batchtest/out2", engine=engine, id_column="doc",
                             text_column="body", progress=False).documents == 3
    finally:
        fs.rm("/batchtest", recursive=True)


def test_another_models_output_is_refused(uninterrupted, corpus):
    other = Engine.from_model("random:tiny:1", device="cpu")
    try:
        with pytest.raises(ModelMismatch, match="written by model"):
            embed_parquet(corpus[0], uninterrupted[0], engine=other, **OPTIONS)
    finally:
        other.shutdown(checkpoint=False)


def test_bad_input_is_refused_with_the_fix(engine, tmp_path):
    pq.write_table(pa.table({"id": [1.5], "text": ["x"]}), tmp_path / "f.parquet")
    with pytest.raises(InvalidArgument, match="ids must be strings or integers"):
        embed_parquet(str(tmp_path / "f.parquet"), str(tmp_path / "o"), engine=engine, progress=False)
    with pytest.raises(InvalidArgument, match="no text column 'body'.*--text-column"):
        embed_parquet(str(tmp_path / "f.parquet"), str(tmp_path / "o"), engine=engine, text_column="body",
                      id_column="text", progress=False)
    with pytest.raises(InvalidArgument, match="does not exist"):
        embed_parquet(str(tmp_path / "missing"), str(tmp_path / "o"), engine=engine, progress=False)
    with pytest.raises(InvalidArgument, match="no file matches"):
        embed_parquet(str(tmp_path / "*.pq"), str(tmp_path / "o"), engine=engine, progress=False)
    (tmp_path / "out-file").write_text("")
    with pytest.raises(InvalidArgument, match="is a file; give a folder"):
        embed_parquet(str(tmp_path / "f.parquet"), str(tmp_path / "out-file"), engine=engine, id_column="text",
                      progress=False)


class FailingEngine:
    """The real engine, except that chunks of one document fail as a broken model step would."""

    def __init__(self, engine, fail_text: bytes):
        self.engine, self.fail_text = engine, fail_text

    def submit_append(self, stream_id, seq, data, flush=False):
        if data.startswith(self.fail_text):
            fut = Future()
            fut.set_exception(Unavailable(f"the model step failed; stream {stream_id!r} is back at seq 0"))
            return fut
        return self.engine.submit_append(stream_id, seq, data, flush)

    def __getattr__(self, name):
        return getattr(self.engine, name)


def test_an_engine_failure_stops_the_job_and_commits_nothing_of_the_part(engine, tmp_path):
    ids = [f"d{i}" for i in range(6)]
    texts = [f"Document {i} is fine." for i in range(6)]
    texts[4] = "BOOM this one fails."
    pq.write_table(pa.table({"id": ids, "text": texts}), tmp_path / "c.parquet")
    out = str(tmp_path / "o")
    with pytest.raises(Unavailable, match="failed in the engine.*rerun"):
        embed_parquet(str(tmp_path / "c.parquet"), out, engine=FailingEngine(engine, b"BOOM"), rows_per_part=2,
                      parts_in_flight=1, progress=False)
    assert sorted(os.listdir(out)) == ["part-000000.parquet", "part-000001.parquet"]
    report = embed_parquet(str(tmp_path / "c.parquet"), out, engine=engine, rows_per_part=2, progress=False)
    assert (report.skipped, report.documents, report.errors) == (4, 2, 0)


def test_the_corpus_reads_batches_of_about_batch_bytes_of_text_in_row_order(tmp_path):
    """Batches hold about batch_bytes of text by the file's mean row (one row when a row is larger), and every row
    comes out once, in order, across row groups and files."""
    from streamret.batch.corpus import MAX_BATCH_ROWS, Corpus

    books = [book(30_000, seed=i) for i in range(7)]
    notes = [f"note {i}." for i in range(3000)]
    pq.write_table(pa.table({"id": [f"b{i}" for i in range(7)], "text": books}), tmp_path / "a.parquet",
                   row_group_size=3)
    pq.write_table(pa.table({"id": [f"n{i}" for i in range(3000)], "text": notes}), tmp_path / "b.parquet")
    corpus = Corpus(str(tmp_path))
    got = list(corpus.batches(batch_bytes=64 << 10))
    assert [i for t in got for i in t.column("id").to_pylist()] == [f"b{i}" for i in range(7)] + [f"n{i}" for i in
                                                                                                  range(3000)]
    assert [t.as_py().decode() for b in got for t in b.column("text")] == books + notes
    assert [b.num_rows for b in got[:4]] == [2, 2, 2, 1]  # two 30 KB books a batch, over row groups of three
    assert max(b.num_rows for b in got[3:]) > 1000  # about 10 bytes a note
    assert all(b.num_rows <= MAX_BATCH_ROWS for b in got)
    assert [b.num_rows for b in corpus.batches(batch_bytes=1)][:7] == [1] * 7


def test_parts_depend_only_on_the_rows():
    texts = [b"x" * n for n in [5, 1, 30, 2, 2, 2, 50, 1, 1, 1, 1, 9]]
    table = pa.table({"id": [str(i) for i in range(len(texts))], "text": pa.array(texts, pa.large_binary()),
                      "error": pa.nulls(len(texts), pa.string())})

    def cut(sizes):
        starts = np.cumsum([0, *sizes])
        batches = [table.slice(a, b - a) for a, b in zip(starts[:-1], starts[1:])]
        return [p.column("id").to_pylist() for p in job.cut_parts(batches, rows_per_part=4, bytes_per_part=32)]

    expected = [["0", "1", "2"], ["3", "4", "5", "6"], ["7", "8", "9", "10"], ["11"]]
    assert cut([12]) == cut([1] * 12) == cut([5, 2, 5]) == cut([3, 3, 3, 3]) == expected


def test_resume_skips_as_many_rows_per_id_as_were_written():
    batches = [pa.table({"id": ["a", "b", "a"]}), pa.table({"id": ["a", None, "c", None]})]
    out = list(job.skip_written(batches, {"a": 2, None: 1, "c": 1}))
    assert [(t.column("id").to_pylist(), n) for t, n in out] == [(["b"], 2), (["a", None], 2)]


def test_a_part_keeps_every_value_and_encodes_the_embeddings_plainly(tmp_path):
    """A committed part reads back equal; its embedding values are written without a dictionary and page statistics
    (nearly all distinct: the writer's attempt is wasted work), every other column with them as before."""
    rng = np.random.default_rng(0)
    flat = rng.standard_normal((50, 8)).astype(np.float32)
    table = pa.table({"id": pa.array(range(50), pa.int64()),
                      "embedding": pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), 8),
                      "tokens": pa.array([7] * 50, pa.int64()),
                      "summary": pa.array([["a b.", "c d."]] * 50, pa.list_(pa.string())),
                      "error": pa.nulls(50, pa.string())})
    path = PartFolder(str(tmp_path)).commit(0, table)
    assert pq.read_table(path).equals(table)
    encoder = PartEncoder()  # the local job's way: row groups encoded as the rows come
    for start in (0, 20, 45):
        encoder.add(table.slice(start, {0: 20, 20: 25, 45: 5}[start]))
    path2 = PartFolder(str(tmp_path)).commit(1, encoder)
    assert pq.read_table(path2).equals(table) and pq.ParquetFile(path2).metadata.num_row_groups == 3
    for p in (path, path2):
        for g in range(pq.ParquetFile(p).metadata.num_row_groups):
            meta = pq.ParquetFile(p).metadata.row_group(g)
            chunks = {meta.column(i).path_in_schema: meta.column(i) for i in range(meta.num_columns)}
            assert set(chunks) == {"id", "embedding.list.element", "tokens", "summary.list.element", "error"}
            for path_in_schema, chunk in chunks.items():
                plain = path_in_schema.startswith("embedding.")
                assert ("RLE_DICTIONARY" not in chunk.encodings) == plain, (path_in_schema, chunk.encodings)
                assert (chunk.statistics is None) == plain, path_in_schema
    with pytest.raises(ValueError, match="given no rows"):
        PartEncoder().finish()


def test_embed_table_hands_its_rows_on_in_order_as_they_are_done(engine):
    """on_rows gets the output in table order, at least rows_at_once rows at a time but the last, and what it gets
    is what embed_table returns; a long document holds back the rows after it, not those before."""
    texts = [SHORT[0], SHORT[1], "", HUGE, *SHORT[2:]]
    table = pa.table({"id": [f"r{i}" for i in range(len(texts))], "text": texts})
    got: list[pa.Table] = []
    out = embed_table(engine, table, summary_k=1, chunk_bytes=CHUNK_BYTES, on_rows=got.append, rows_at_once=2)
    assert pa.concat_tables(got).equals(out) and out.column("id").to_pylist() == table.column("id").to_pylist()
    assert all(t.num_rows >= 2 for t in got[:-1]) and len(got) > 1
    assert got[0].column("id").to_pylist() == ["r0", "r1", "r2"]  # those before the long one: out before it is done


def test_parts_encoded_as_their_rows_come_back_equal_parts_encoded_whole(uninterrupted, engine, corpus, tmp_path,
                                                                          monkeypatch):
    """With a row group every 2 rows, rows that finish out of order (a long document among short ones) and bad rows
    between good ones, each part file holds the rows of the uninterrupted run in order, in several row groups."""
    monkeypatch.setattr(job, "ROW_GROUP_ROWS", 2)
    out = str(tmp_path / "small-groups")
    report = embed_parquet(corpus[0], out, engine=engine, **OPTIONS)
    assert report.parts == uninterrupted[1].parts
    assert_same_output(pq.read_table(out), pq.read_table(uninterrupted[0]))
    groups = [pq.ParquetFile(f"{out}/{name}").metadata.num_row_groups for name in sorted(os.listdir(out))]
    assert max(groups) > 1, groups
    # a row of a text column of the wrong type (a bad row of the part) between the good rows of one row group
    pq.write_table(pa.table({"id": ["g0"], "text": [SHORT[0]]}), tmp_path / "f1.parquet")
    pq.write_table(pa.table({"id": ["w"], "text": [7]}), tmp_path / "f2.parquet")
    pq.write_table(pa.table({"id": ["g1", "g2", "g3"], "text": [SHORT[1], HUGE, SHORT[2]]}), tmp_path / "f3.parquet")
    out = str(tmp_path / "mixed")
    embed_parquet(str(tmp_path / "f*.parquet"), out, engine=engine, **{**OPTIONS, "rows_per_part": 5})
    table = pq.read_table(out)
    assert table.column("id").to_pylist() == ["g0", "w", "g1", "g2", "g3"]
    assert [e is None for e in table.column("error").to_pylist()] == [True, False, True, True, True]
    assert pq.ParquetFile(f"{out}/part-000000.parquet").metadata.num_row_groups > 1


def test_a_footerless_ray_file_is_removed_and_another_is_refused(tmp_path):
    folder = PartFolder(str(tmp_path))
    (tmp_path / "ray_abc_000000-0.parquet").write_bytes(b"PAR1 cut short")
    assert folder.prepare_resume("fp").rows == 0 and not (tmp_path / "ray_abc_000000-0.parquet").exists()
    (tmp_path / "mine.parquet").write_bytes(b"not parquet")
    with pytest.raises(InvalidArgument, match="mine.parquet is not readable Parquet"):
        folder.prepare_resume("fp")


def test_embed_command(tmp_path, capsys):
    pq.write_table(pa.table({"key": [3, 4], "body": ["One sentence. Two.", "Three!"]}), tmp_path / "in.parquet")
    argv = ["embed", str(tmp_path / "in.parquet"), "-o", str(tmp_path / "out"), "--model", "random:tiny",
            "--device", "cpu", "--id-column", "key", "--text-column", "body", "--summary-k", "1", "--no-progress"]
    assert cli.main(argv) == 0
    assert "2 documents (0 with an error)" in capsys.readouterr().out
    table = pq.read_table(tmp_path / "out")
    assert table.column("id").to_pylist() == [3, 4] and table.schema.field("id").type == pa.int64()
    assert cli.main(argv) == 0 and "0 documents" in capsys.readouterr().out  # rerun: all skipped
    assert cli.main([*argv[:-5], "--text-column", "nope", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no text column 'nope'" in err


def test_parts_by_default_hold_a_share_for_every_engine_process_and_sixteen_times_that_on_a_gpu(monkeypatch, tmp_path):
    """With engine processes the default part (and so the text in flight) is 1 MiB and 1,024 rows per engine
    process, so that each has work, and GPU_PART_SCALE times that when the model is on a GPU (engine processes say
    where in their model_info; an engine in this process by its model's parameters); a size given is kept."""
    pq.write_table(pa.table({"id": ["a"], "text": ["Some text."]}), tmp_path / "c.parquet")
    seen = []
    monkeypatch.setattr(job, "_run_local", lambda *a, **kw: seen.append((kw["bytes_per_part"], kw["rows_per_part"])))

    class Procs:
        procs, fingerprint = 3, "f"

        def __init__(self, device=None):
            self.model_info = {"device": device} if device else {}

        def check_role(self, role):  # the job checks its role before anything else (every engine serves "query")
            assert role == "query"

    class InProcess:  # an Engine in this process: its model's parameters say the device
        fingerprint, check_role = "f", Procs.check_role

        def __init__(self, device):
            self.model = torch.nn.Linear(2, 2, device=device)

    embed_parquet(str(tmp_path / "c.parquet"), str(tmp_path / "o"), engine=Procs(), progress=False)
    embed_parquet(str(tmp_path / "c.parquet"), str(tmp_path / "o"), engine=Procs(), bytes_per_part=5000,
                  rows_per_part=7, progress=False)
    embed_parquet(str(tmp_path / "c.parquet"), str(tmp_path / "o"), engine=Procs("cpu"), progress=False)
    embed_parquet(str(tmp_path / "c.parquet"), str(tmp_path / "o"), engine=Procs("cuda:0"), progress=False)
    embed_parquet(str(tmp_path / "c.parquet"), str(tmp_path / "o"), engine=Procs("cuda:0"), bytes_per_part=5000,
                  progress=False)
    embed_parquet(str(tmp_path / "c.parquet"), str(tmp_path / "o"), engine=InProcess("cpu"), progress=False)
    cpu = (job.DEFAULT_BYTES_PER_PART, job.DEFAULT_ROWS_PER_PART)
    gpu = (16 * cpu[0], 16 * cpu[1])
    assert job.GPU_PART_SCALE == 16
    assert seen == [(3 * cpu[0], 3 * cpu[1]), (5000, 7), (3 * cpu[0], 3 * cpu[1]), (3 * gpu[0], 3 * gpu[1]),
                    (5000, 3 * gpu[1]), cpu]
    assert model_device(InProcess("meta")) == "meta" and model_device(Procs("cuda:0")) == "cuda:0"
    assert model_device(Procs()) is None  # (a gateway that does not hold the model: parts as on a CPU)
    with pytest.raises(InvalidArgument, match="bytes_per_part must be >= 1"):
        embed_parquet(str(tmp_path / "c.parquet"), str(tmp_path / "o"), engine=Procs(), bytes_per_part=0)
