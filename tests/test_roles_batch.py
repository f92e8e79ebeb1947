"""`streamret embed --role document` (issue 18's roles through the batch job): the document role's embeddings are the
model's document map applied once to the query role's (in this process, over engine processes, on Ray, and in the
Ray Data Embedder); parts carry their role and a resume in another role is refused; a model without a map, or an
unknown role, is refused before anything is written."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers_roles import folder_with_document_map

from streamret import cli
from streamret.batch import Embedder, embed_parquet
from streamret.batch.parts import ROLE_KEY
from streamret.engine import Engine
from streamret.errors import FailedPrecondition, InvalidArgument

OPTIONS = dict(device="cpu", rows_per_part=3, chunk_bytes=1021, summary_k=2, progress=False)
TEXTS = {"a": "The river ran north past the mill. Boats carried grain.", "b": "naïve café 日本語のテキスト。 Emoji 🙂!",
         "c": "Short.", "d": "Stone walls held the valley. " * 60, "e": None, "f": "Light fell on the water. " * 9,
         "g": "The last document of the corpus."}
MAP_MESSAGE = "role 'document' needs the model's document map"


@pytest.fixture(scope="module")
def mapped(tmp_path_factory):
    """(a checkpoint folder with a document map, the map)."""
    return folder_with_document_map(tmp_path_factory.mktemp("mapped") / "model")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("corpus")
    ids = list(TEXTS)
    pq.write_table(pa.table({"id": ids[:4], "text": [TEXTS[i] for i in ids[:4]]}), folder / "a.parquet")
    pq.write_table(pa.table({"id": ids[4:], "text": pa.array([TEXTS[i] for i in ids[4:]], pa.string())}),
                   folder / "b.parquet")
    return str(folder)


@pytest.fixture(scope="module")
def query_rows(mapped, corpus, tmp_path_factory) -> pa.Table:
    out = tmp_path_factory.mktemp("query") / "out"
    report = embed_parquet(corpus, str(out), model=str(mapped[0]), **OPTIONS)
    assert report.role == "query" and report.documents == len(TEXTS)
    return pq.read_table(out).sort_by("id")


def vectors(rows: pa.Table) -> np.ndarray:
    return np.array([v if v is not None else [np.nan] * 64 for v in rows.column("embedding").to_pylist()],
                    np.float32)


def assert_document_role_of(rows: pa.Table, query_rows: pa.Table, doc_map) -> None:
    """`rows` are `query_rows` with the document map applied to each embedded row, once; failed rows stay null."""
    rows = rows.sort_by("id")
    assert rows.column("id").to_pylist() == query_rows.column("id").to_pylist()
    assert rows.column("error").to_pylist() == query_rows.column("error").to_pylist()
    assert rows.column("tokens").to_pylist() == query_rows.column("tokens").to_pylist()
    ok = query_rows.column("error").is_null().to_numpy(zero_copy_only=False)
    assert ok.sum() == len(TEXTS) - 1 and rows.column("embedding").null_count == 1
    query, document = vectors(query_rows)[ok], vectors(rows)[ok]
    assert np.allclose(document, doc_map(query), atol=1e-5)
    assert not np.allclose(document, query, atol=1e-2)  # the map is not the identity: the test can fail
    assert not np.allclose(document, doc_map(doc_map(query)), atol=1e-3)  # applied once, not twice


def part_roles(folder) -> set[bytes | None]:
    return {pq.read_schema(os.path.join(folder, name)).metadata.get(ROLE_KEY) for name in os.listdir(folder)}


def test_the_document_role_is_the_map_applied_to_the_query_roles_embeddings(mapped, corpus, query_rows, tmp_path):
    out = tmp_path / "document"
    report = embed_parquet(corpus, str(out), model=str(mapped[0]), role="document", **OPTIONS)
    assert report.role == "document" and report.documents == len(TEXTS) and report.parts == 3
    assert_document_role_of(pq.read_table(out), query_rows, mapped[1])
    assert part_roles(out) == {b"document"}


def test_over_engine_processes_the_role_is_applied_once_on_the_callers_side(mapped, corpus, query_rows, tmp_path):
    out = tmp_path / "document"
    report = embed_parquet(corpus, str(out), model=str(mapped[0]), engine_procs=2, role="document", **OPTIONS)
    assert report.documents == len(TEXTS)
    assert_document_role_of(pq.read_table(out), query_rows, mapped[1])
    assert part_roles(out) == {b"document"}


def test_a_resume_in_another_role_is_refused_and_writes_nothing(mapped, corpus, tmp_path):
    out = tmp_path / "out"
    with Engine.from_model(str(mapped[0]), device="cpu") as engine:
        embed_parquet(corpus, str(out), engine=engine, role="document", **{k: v for k, v in OPTIONS.items()
                                                                            if k != "device"})
        os.remove(out / "part-000002.parquet")  # an interrupted run: the resume would write this part again
        before = {name: (out / name).stat().st_mtime_ns for name in os.listdir(out)}
        with pytest.raises(FailedPrecondition) as refused:
            embed_parquet(corpus, str(out), engine=engine, role="query", **{k: v for k, v in OPTIONS.items()
                                                                             if k != "device"})
    message = str(refused.value)
    for needed in (str(out), "role 'document'", "role 'query'", "another output folder", "--role document"):
        assert needed in message, message
    assert {name: (out / name).stat().st_mtime_ns for name in os.listdir(out)} == before


def test_parts_written_before_roles_count_as_query(mapped, corpus, query_rows, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    legacy = query_rows.replace_schema_metadata({k: v for k, v in query_rows.schema.metadata.items() if k != ROLE_KEY})
    pq.write_table(legacy, out / "part-000000.parquet")
    assert part_roles(out) == {None}
    again = embed_parquet(str(corpus), str(out), model=str(mapped[0]), **OPTIONS)
    assert (again.documents, again.skipped) == (0, len(TEXTS))
    with pytest.raises(FailedPrecondition, match="holds embeddings of role 'query', this job writes role 'document'"):
        embed_parquet(str(corpus), str(out), model=str(mapped[0]), role="document", **OPTIONS)


def test_a_model_without_a_document_map_is_refused_before_anything_is_written(corpus, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(FailedPrecondition, match=MAP_MESSAGE):
        embed_parquet(corpus, str(out), model="random:tiny", role="document", **OPTIONS)
    assert not out.exists()
    with Engine.from_model("random:tiny", device="cpu") as engine:
        with pytest.raises(FailedPrecondition, match=MAP_MESSAGE):
            embed_parquet(corpus, str(out), engine=engine, role="document", progress=False)
        assert engine.stats()["tokens_processed"] == 0  # refused before any row was sent
    assert not out.exists()
    with pytest.raises(InvalidArgument, match="role='passage'; use 'query'"):
        embed_parquet(corpus, str(out), model="random:tiny", role="passage", **OPTIONS)
    assert not out.exists()


def test_the_embed_command_takes_role_and_names_it_in_its_last_line(mapped, corpus, query_rows, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["embed", corpus, "-o", str(out), "--model", str(mapped[0]), "--device", "cpu", "--rows-per-part", "3",
            "--summary-k", "2", "--no-progress", "--role", "document"]
    assert cli.main(argv) == 0
    assert f"-> {out} (role document);" in capsys.readouterr().out
    assert_document_role_of(pq.read_table(out), query_rows, mapped[1])
    assert cli.main([*argv[:-1], "query"]) == 2
    err = capsys.readouterr().err
    assert "this job writes role 'query'" in err and len(err.strip().splitlines()) == 1


def test_the_embed_command_refuses_document_on_a_model_without_a_map_in_one_line(corpus, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["embed", corpus, "-o", str(out), "--model", "random:tiny", "--device", "cpu", "--no-progress"]
    assert cli.main([*argv, "--role", "document"]) == 2
    _, err = capsys.readouterr()
    assert MAP_MESSAGE in err and "or ask for role 'query'" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    with pytest.raises(SystemExit) as bad:
        cli.main([*argv, "--role", "passage"])
    assert bad.value.code == 2 and "invalid choice: 'passage'" in capsys.readouterr().err


def test_info_names_the_roles_a_model_serves(mapped, capsys):
    assert cli.main(["info", str(mapped[0])]) == 0
    assert "roles          query, document\n" in capsys.readouterr().out
    assert cli.main(["info", "random:tiny"]) == 0
    assert "roles          query (no document map: " in capsys.readouterr().out


def test_the_ray_data_embedder_takes_role(mapped):
    table = pa.table({"body": [t for t in TEXTS.values() if t]})
    query = Embedder(str(mapped[0]), text_column="body", device="cpu")(table)
    document = Embedder(str(mapped[0]), text_column="body", device="cpu", role="document")(table)
    q, d = (np.array(t.column("embedding").to_pylist(), np.float32) for t in (query, document))
    assert np.allclose(d, mapped[1](q), atol=1e-5) and not np.allclose(d, q, atol=1e-2)
    with pytest.raises(FailedPrecondition, match=MAP_MESSAGE):
        Embedder("random:tiny", device="cpu", role="document")


@pytest.mark.ray
def test_on_ray_the_role_is_applied_once_and_checked_up_front(mapped, corpus, query_rows, tmp_path):
    ray = pytest.importorskip("ray")
    from helpers_ray import start_local_ray

    start_local_ray(num_cpus=2)
    try:
        options = {k: v for k, v in OPTIONS.items() if k != "progress"}
        out = tmp_path / "ray"
        report = embed_parquet(corpus, str(out), model=str(mapped[0]), ray=True, role="document", **options)
        assert report.role == "document" and report.documents == len(TEXTS)
        assert_document_role_of(pq.read_table(out), query_rows, mapped[1])
        assert part_roles(out) == {b"document"}
        with pytest.raises(FailedPrecondition, match="holds embeddings of role 'document', this job writes role"):
            embed_parquet(corpus, str(out), model=str(mapped[0]), ray=True, **options)
        with pytest.raises(FailedPrecondition, match=MAP_MESSAGE):
            embed_parquet(corpus, str(tmp_path / "none"), model="random:tiny", ray=True, role="document", **options)
        assert not (tmp_path / "none").exists()
    finally:
        ray.shutdown()
