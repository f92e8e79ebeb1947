"""The public Ray Data embedder: `ds.map_batches(Embedder, ...)` on the user's own columns, in each batch format,
with the same vectors as Engine.encode (= the stream embedding of one chunk); bad rows, clashing names."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from streamret.batch import Embedder
from streamret.engine import Engine
from streamret.errors import InvalidArgument

MODEL = "random:tiny"
TEXTS = ["The river ran north.", "naïve café 日本語のテキスト。 Emoji 🙂 and 𝄞!", "Boats carried grain. " * 200, "x"]


@pytest.fixture(scope="module")
def embedder():
    return Embedder(MODEL, text_column="body", output_column="vec", tokens_column="n_tokens", device="cpu",
                    chunk_bytes=1024)  # the 4 KB text goes in as several chunks


@pytest.fixture(scope="module")
def want():
    with Engine.from_model(MODEL, device="cpu") as engine:
        return engine.encode(TEXTS, normalize=False)


def assert_rows_close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape and got.dtype == np.float32
    for g, w in zip(got, want):
        assert np.linalg.norm(g - w) <= 1e-5 * np.linalg.norm(w), np.abs(g - w).max()


def test_each_batch_format_keeps_the_columns_and_adds_the_vectors(embedder, want):
    ids = [10, 11, 12, 13]
    arrow = embedder(pa.table({"doc_id": ids, "body": TEXTS}))
    assert arrow.column_names == ["doc_id", "body", "vec", "n_tokens"]
    assert arrow.schema.field("vec").type == pa.list_(pa.float32(), 64)
    assert_rows_close(np.array(arrow.column("vec").to_pylist(), np.float32), want)
    assert arrow.column("n_tokens").to_pylist() == [len(t.encode()) for t in TEXTS]  # the byte tokenizer

    frame = embedder(pd.DataFrame({"doc_id": ids, "body": TEXTS}, index=[7, 5, 3, 1]))
    assert list(frame.columns) == ["doc_id", "body", "vec", "n_tokens"] and list(frame.index) == [7, 5, 3, 1]
    assert_rows_close(np.stack(frame["vec"].to_list()), want)

    numpy = embedder({"doc_id": np.array(ids), "body": np.array(TEXTS, dtype=object)})
    assert set(numpy) == {"doc_id", "body", "vec", "n_tokens"} and numpy["vec"].shape == (4, 64)
    assert_rows_close(numpy["vec"], want)


def test_bad_rows_fail_the_batch_by_name_or_go_to_the_error_column(embedder, want):
    with pytest.raises(InvalidArgument, match=r"row 1 of the batch, column 'body': text is empty.*error_column"):
        embedder(pa.table({"body": ["fine", ""]}))
    with pytest.raises(InvalidArgument, match="row 0 of the batch.*null"):
        embedder(pd.DataFrame({"body": [None, "fine"]}))

    lenient = Embedder(MODEL, text_column="body", error_column="why", device="cpu")
    out = lenient(pa.table({"body": [TEXTS[0], "", None, "a\x00b"]}))
    assert out.column("embedding").null_count == 3
    assert_rows_close(np.array([out.column("embedding")[0].as_py()], np.float32), want[:1])
    why = out.column("why").to_pylist()
    assert why[0] is None and "empty" in why[1] and "null" in why[2] and "NUL byte at offset 1" in why[3]
    numpy = lenient({"body": np.array([TEXTS[0], ""], dtype=object)})
    assert np.isnan(numpy["embedding"][1]).all() and not np.isnan(numpy["embedding"][0]).any()


def test_columns_are_checked_by_name(embedder):
    with pytest.raises(InvalidArgument, match=r"no column 'body'; its columns are \['text'\]: pass text_column="):
        embedder(pa.table({"text": ["a"]}))
    with pytest.raises(InvalidArgument, match="already has a column 'vec'"):
        embedder(pa.table({"body": ["a"], "vec": [1]}))
    with pytest.raises(InvalidArgument, match="must all differ"):
        Embedder(MODEL, text_column="body", output_column="body", device="cpu")
    with pytest.raises(InvalidArgument, match="in_flight must be an integer >= 1, got 0"):
        Embedder(MODEL, in_flight=0, device="cpu")


@pytest.mark.ray
def test_map_batches_with_an_actor_pool_on_a_local_ray(want):
    ray = pytest.importorskip("ray")
    from helpers_ray import start_local_ray

    start_local_ray(num_cpus=2)
    try:
        ds = ray.data.from_items([{"doc_id": i, "body": t} for i, t in enumerate(TEXTS)], override_num_blocks=2)
        ds = ds.map_batches(Embedder, batch_size=2, batch_format="pyarrow", num_cpus=1,
                            fn_constructor_kwargs=dict(model=MODEL, text_column="body", output_column="vec",
                                                       device="cpu"),
                            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=2))
        rows = sorted(ds.take_all(), key=lambda r: r["doc_id"])
    finally:
        ray.shutdown()
    assert [r["body"] for r in rows] == TEXTS
    assert_rows_close(np.array([r["vec"] for r in rows], np.float32), want)
