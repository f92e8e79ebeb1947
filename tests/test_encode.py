"""encode(texts) -> ndarray on the in-process Engine and on the gRPC client: equal to the stream embedding of
the same text sent as one chunk, shapes, bad input, batching, progress bar, temporary streams cleaned up."""

import numpy as np
import pytest

from streamret.client import Client
from streamret.engine import Engine
from streamret.errors import InvalidArgument
from streamret.service.limits import ServiceLimits
from streamret.service.server import BackgroundServer, ServerConfig

LONG = " ".join(f"Sentence {i} about naïve cafés, 日本語 and 🙂 boats on the river." for i in range(1000))  # ~70 KB
MEDIUM = LONG[:6000]
TEXTS = ["The river ran north.", "naïve café 日本語のテキスト。 Emoji 🙂🚀 and 𝄞 clefs!", LONG,
         "Boats carried grain to the city. Every spring the floods came back.", "x"]
SHORTER = [t if t is not LONG else MEDIUM for t in TEXTS]  # for the client: the same paths, less CPU


@pytest.fixture(scope="module")
def engine():
    with Engine.from_model("random:tiny", device="cpu") as eng:
        yield eng


def one_chunk(engine: Engine, text: str, sid: str) -> np.ndarray:
    engine.append(sid, 1, text, flush=True)
    out = engine.embedding(sid)
    engine.close(sid)
    return out


def assert_close(got: np.ndarray, want: np.ndarray) -> None:
    """Equal to 1e-5 relative (as vectors: float32 sums over ~10^5 tokens differ in the last bits)."""
    assert np.linalg.norm(want) > 0.5
    assert np.linalg.norm(got - want) <= 1e-5 * np.linalg.norm(want), np.abs(got - want).max()


def assert_no_streams(engine: Engine) -> None:
    assert not engine.store.streams, f"temporary streams left behind: {sorted(engine.store.streams)[:5]}"


def test_engine_encode_equals_stream_embedding_of_one_chunk(engine):
    assert len(LONG.encode()) > 64 * 1024  # the batch path cuts it into several chunks
    got = engine.encode(TEXTS, batch_size=3)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), engine.model.config.out_embed_dim)
    for i, text in enumerate(TEXTS):
        assert_close(got[i], one_chunk(engine, text, f"ref-{i}"))
    assert len({tuple(np.round(v, 4)) for v in got}) == len(TEXTS)  # not one vector repeated
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)
    assert_no_streams(engine)


def test_engine_encode_shapes_single_text_empty_list_and_empty_text(engine):
    dim = engine.model.config.out_embed_dim
    empty = engine.encode([])
    assert empty.shape == (0, dim) and empty.dtype == np.float32
    single = engine.encode("The river ran north.")
    assert single.shape == (dim,)
    np.testing.assert_allclose(single, engine.encode(["The river ran north."])[0], rtol=1e-6)
    mixed = engine.encode(["", "words", ""], normalize=False)
    assert mixed.shape == (3, dim)
    assert not mixed[0].any() and not mixed[2].any()  # no tokens: the zero vector, as the engine answers
    assert_close(mixed[1], one_chunk(engine, "words", "ref-w"))
    assert engine.encode(x for x in ["a b", "c"]).shape == (2, dim)  # any iterable of str
    assert_no_streams(engine)


@pytest.mark.parametrize("texts, words", [
    (["fine", 3, "fine"], ["texts[1]", "int", "str"]),
    (["fine", b"bytes"], ["texts[1]", "bytes", "decode"]),
    ([None], ["texts[0]", "NoneType"]),
    (["bad \ud800 surrogate"], ["texts[0]", "surrogate"]),
    (b"raw bytes", ["bytes", "decode"]),
    (42, ["int", "list of str"]),
])
def test_engine_encode_refuses_bad_input_by_name(engine, texts, words):
    with pytest.raises(InvalidArgument) as info:
        engine.encode(texts)
    for word in words:
        assert word in str(info.value)
    assert_no_streams(engine)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True, "8"])
def test_engine_encode_refuses_bad_batch_size(engine, batch_size):
    with pytest.raises(InvalidArgument, match="batch_size"):
        engine.encode(["a"], batch_size=batch_size)


def test_engine_encode_keeps_batch_size_texts_in_flight_and_packs_them(engine, monkeypatch):
    most = []
    real_open = engine.open

    def counting_open(stream_id, **kw):
        info = real_open(stream_id, **kw)
        most.append(len(engine.store.streams))
        return info

    monkeypatch.setattr(engine, "open", counting_open)
    texts = [f"Short text number {i}, with some words." for i in range(40)]
    engine.encode(texts, batch_size=8)
    assert max(most) <= 8
    before = engine.stats()["steps"]
    engine.encode(texts, batch_size=40)
    assert max(most) > 8
    stats = engine.stats()
    n = stats["steps"] - before
    with_tokens = [t for t in stats["recent_step_tokens"][-n:] if t]
    assert sum(with_tokens) > 0 and len(with_tokens) < len(texts) // 2  # the model saw packed steps
    assert_no_streams(engine)


def test_engine_encode_names_the_failed_text_and_closes_every_stream(engine, monkeypatch):
    real = engine.embedding
    calls = []

    def flaky(stream_id):
        calls.append(stream_id)
        if len(calls) == 3:
            raise InvalidArgument(f"stream {stream_id!r} broke on purpose")
        return real(stream_id)

    monkeypatch.setattr(engine, "embedding", flaky)
    with pytest.raises(InvalidArgument, match=r"texts\[\d\] could not be embedded: .*broke on purpose"):
        engine.encode([f"text {i}" for i in range(6)], batch_size=2)
    assert_no_streams(engine)


def test_engine_encode_cleans_up_after_an_interrupt(engine, monkeypatch):
    real = engine.submit_append
    calls = []

    def interrupted(*args, **kw):
        calls.append(args)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(engine, "submit_append", interrupted)
    with pytest.raises(KeyboardInterrupt):
        engine.encode([f"text {i}" for i in range(10)], batch_size=4)
    monkeypatch.undo()
    assert_no_streams(engine)


def test_engine_encode_progress_bar_only_when_asked(engine, capsys):
    engine.encode(["a b c", "", "d e"], show_progress_bar=False)
    assert capsys.readouterr().err == ""
    engine.encode(["a b c", "", "d e"], show_progress_bar=True)
    err = capsys.readouterr().err
    assert "encode" in err and "3/3" in err


# --- the gRPC client -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(engine):
    srv = BackgroundServer(engine, ServerConfig(port=0, limits=ServiceLimits(batch_chunk_bytes=1000)))
    yield srv
    srv.stop()


def test_client_encode_equals_get_embedding_of_one_chunk(server, engine):
    with Client(f"127.0.0.1:{server.port}") as c:
        got = c.encode(SHORTER, batch_size=2)
        assert got.dtype == np.float32 and got.shape == (len(SHORTER), engine.model.config.out_embed_dim)
        for i, text in enumerate(SHORTER):
            c.stream(f"cref-{i}", [text])
            assert_close(got[i], c.embedding_array(f"cref-{i}"))
            c.close_stream(f"cref-{i}")
    assert_no_streams(engine)


def test_client_encode_streams_a_text_too_large_for_one_message(server, engine, monkeypatch):
    # a 16 KiB message limit: a table holds at most 4 KiB of text, so MEDIUM goes as a temporary stream
    chunks = {}
    real = engine.submit_append

    def recording(stream_id, seq, data, *a, **kw):
        chunks.setdefault(stream_id, []).append(len(data))
        return real(stream_id, seq, data, *a, **kw)

    monkeypatch.setattr(engine, "submit_append", recording)
    with Client(f"127.0.0.1:{server.port}", max_message_bytes=16 * 1024) as c:
        got = c.encode(["before", MEDIUM, "after"])
    monkeypatch.undo()
    streamed = [sizes for sid, sizes in chunks.items() if sid.rpartition("\x1f")[2].startswith("encode-")]
    assert len(streamed) == 1 and sum(streamed[0]) == len(MEDIUM.encode()) and max(streamed[0]) <= 4096
    assert_close(got[1], one_chunk(engine, MEDIUM, "ref-long"))
    assert_close(got[0], one_chunk(engine, "before", "ref-b"))
    assert_no_streams(engine)


def test_client_encode_shapes_and_bad_input(server, engine, capsys):
    dim = engine.model.config.out_embed_dim
    with Client(f"127.0.0.1:{server.port}") as c:
        assert c.encode([]).shape == (0, dim)
        assert c.encode([""]).shape == (1, dim) and not c.encode([""]).any()
        assert c.encode("one text").shape == (dim,)
        with pytest.raises(InvalidArgument, match=r"texts\[2\] is a float"):
            c.encode(["a", "b", 1.5])
        with pytest.raises(InvalidArgument, match="batch_size"):
            c.encode(["a"], batch_size=0)
        capsys.readouterr()
        c.encode([f"t {i}" for i in range(5)], batch_size=2, show_progress_bar=True)
        assert "5/5" in capsys.readouterr().err
    assert_no_streams(engine)


def test_engine_encode_with_a_durable_store_leaves_no_records(tmp_path):
    with Engine.from_model("random:tiny", device="cpu", state_dir=str(tmp_path / "states")) as eng:
        got = eng.encode([f"Document {i} about rivers and stones." for i in range(12)], batch_size=5)
        assert got.shape == (12, eng.model.config.out_embed_dim)
        assert_no_streams(eng)
        left = [p for p in (tmp_path / "states").rglob("*") if p.is_file()]
        assert not left, left[:5]
        eng.append("kept", 1, "a stream of its own", flush=True, durable=True)  # the store does write records here
        assert [p for p in (tmp_path / "states").rglob("*") if p.is_file()]


def test_default_model_encode_equals_one_chunk_and_ranks_paraphrases():
    # the bundled model (HF tokenizer): encode equals the stream embedding of each text sent as one chunk
    anchor, paraphrase, unrelated = ("The server ran out of memory and crashed.",
                                     "The machine crashed because its memory was exhausted.",
                                     "She planted tomatoes and basil in her garden.")
    with Engine.from_model("default", device="cpu") as eng:
        got = eng.encode([anchor, paraphrase, unrelated, "naïve café 日本語 🙂"], batch_size=4)
        for i, text in enumerate([anchor, paraphrase, unrelated, "naïve café 日本語 🙂"]):
            assert_close(got[i], one_chunk(eng, text, f"d{i}"))
        assert_no_streams(eng)
    assert got[0] @ got[1] > got[0] @ got[2]
