"""Crash recovery with the bundled `default` model (WordPiece tokenizer, sentence segments, text tails) and real
text with multi-byte characters: a stream restarted from its state folder mid-stream, with several chunks in
flight, must end with the embedding of an undisturbed run (issue 15, item 1).

The bug: a step that completed chunk k of a stream could also run the first tokens of chunk k+1; the record
written for chunk k then held a state past applied_seq k. After a restart chunk k+1 was resent and its first
tokens ran twice: same applied_seq and token count, another embedding (3e-2 relative with 16 KiB chunks),
or, since records are checked, a record refused as damaged ('state.positions' != 'tokens'). One chunk in
flight never showed it: a step then never holds a chunk behind a completed one. A chunk longer than the step's
token budget is what splits (64 KiB chunks of a book are ~20K tokens, over the default 16,384); these tests
lower the budget to 64 tokens so that small chunks of a short text split as often as a book's.
"""

from __future__ import annotations

import base64
import random
from concurrent.futures import Future

import numpy as np
import pytest
import torch
from helpers_chaos import random_cuts, stream_text

from streamret.engine import Engine, EngineConfig
from streamret.engine.record import decode
from streamret.model.spec import load_model

pytestmark = pytest.mark.timeout(240)

WINDOW = 16  # chunks in flight, like streamret.client's window


@pytest.fixture(scope="module")
def loaded():
    torch.set_num_threads(1)  # the 2-core machine is shared; the default model reads ~4K tokens/s on one thread
    return load_model("default", "cpu", "float32")


@pytest.fixture(scope="module")
def book():
    """~6 KB of prose with multi-byte characters (ä, ü, —, 渡し舟), sentence ends and newlines, cut at random
    byte offsets (inside words and characters), and its undisturbed embedding and token count."""
    text = stream_text(3, 6000)
    chunks = random_cuts(text.encode(), random.Random(5), 60)
    return text, chunks


@pytest.fixture(scope="module")
def undisturbed(loaded, book):
    text, _ = book
    with Engine(loaded) as e:
        e.append("ref", 1, text, flush=True)
        return e.embedding("ref"), e.info("ref").tokens, segments_of(e, "ref")


def segments_of(engine: Engine, sid: str) -> list[tuple[str, int, int]]:
    return [(s.text, s.start_byte, s.end_byte) for s in engine.segments(sid, with_embeddings=False)]


def dropped_text(text: str, segments: list[tuple[str, int, int]]) -> bool:
    """Whether words of text lie outside every kept segment: the stream passed its bound and some were dropped
    (the segments of a stream that never passed it tile its text, whitespace aside)."""
    data, spans = text.encode(), sorted((start, end) for _, start, end in segments)
    return any(data[end:start].strip() for (_, end), (start, _) in zip([(0, 0)] + spans, spans))


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(np.asarray(b, np.float64)))


def send(engine: Engine, sid: str, chunks: list[bytes], first: int, stop_after: int | None) -> None:
    """Append chunks[first - 1:] as seqs first, first + 1, ... with WINDOW chunks in flight, the last one a
    flush asking for a record (what Client.stream sends). With stop_after, the engine is stopped without a
    checkpoint (what a kill -9 leaves: the records written so far) once chunk stop_after is acked."""
    seqs = range(first, len(chunks) + 2)
    inflight: list[tuple[int, Future]] = []
    for seq in seqs:
        last = seq == len(chunks) + 1
        data = b"" if last else chunks[seq - 1]
        inflight.append((seq, engine.submit_append(sid, seq, data, flush=last, durable=last)))
        while inflight and (len(inflight) >= WINDOW or last):
            acked, fut = inflight.pop(0)
            fut.result()
            if stop_after is not None and acked >= stop_after:
                engine.shutdown(checkpoint=False)  # the chunks still in flight fail: a kill
                return


@pytest.mark.parametrize("durable_every", [1, 4], ids=["record-per-chunk", "record-per-4-chunks"])
def test_restarts_mid_stream_with_the_default_model_give_the_undisturbed_embedding_and_segments(
        tmp_path, loaded, book, undisturbed, durable_every):
    _, chunks = book
    ref, ref_tokens, ref_segments = undisturbed
    assert dropped_text(book[0], ref_segments), "the book must pass max_kept_segments, so that kept ones are ranked"
    config = EngineConfig(max_step_tokens=64, durable_every_chunks=durable_every)
    state_dir = str(tmp_path / "states")
    resumed_at = []
    for stop_after in (17, 41, 66, None):  # three stops mid-stream, then to the end
        engine = Engine(loaded, state_dir=state_dir, config=config)
        info = engine.open("book")  # a damaged record (a state past applied_seq) is refused here
        assert info.applied_seq == info.durable_seq
        if resumed_at and durable_every == 1:
            assert info.applied_seq >= resumed_at[-1][1]  # every acked chunk was durable
        resumed_at.append((info.applied_seq, stop_after))
        send(engine, "book", chunks, info.applied_seq + 1, stop_after)
        if stop_after is None:
            got, final, segments = engine.embedding("book"), engine.info("book"), segments_of(engine, "book")
            engine.shutdown()
    assert final.applied_seq == len(chunks) + 1 and final.tokens == ref_tokens, resumed_at
    assert rel_err(got, ref) <= 1e-5, resumed_at
    assert segments == ref_segments, resumed_at  # the segments it keeps, from its records and what was resent


def test_every_record_holds_the_state_of_exactly_its_applied_chunks(tmp_path, loaded, book):
    """Each record written while chunks split across steps (64-token steps, 16 chunks in flight) holds a state
    whose position and pooled count equal its token count, and its text tail ends where its bytes end."""
    _, chunks = book
    engine = Engine(loaded, state_dir=str(tmp_path / "states"), config=EngineConfig(max_step_tokens=64))
    records = []
    write = engine.durable.write

    def spy(stream_id: str, revision: int, data: bytes) -> None:
        records.append(decode(data))
        write(stream_id, revision, data)

    engine.durable.write = spy
    send(engine, "book", chunks, 1, None)
    engine.shutdown()
    assert len(records) >= 10  # the writer coalesces records queued for one stream
    sizes = np.cumsum([0, *map(len, chunks)])
    for meta, tensors in records:
        tokens = meta["tokens"]
        assert int(tensors["state.positions"][0]) == tokens == int(tensors["state.pool_count"][0]), meta["applied_seq"]
        seq = min(meta["applied_seq"], len(chunks))
        tail = len(base64.b64decode(meta["text_tail"]))
        assert meta["text_offset"] + tail == sizes[seq], meta["applied_seq"]


@pytest.mark.parametrize("state_dir", [True, False], ids=["durable", "in-memory"])
def test_a_step_failing_in_the_middle_of_a_chunk_does_not_apply_its_first_part_twice(tmp_path, state_dir):
    """A chunk of ~400 tokens runs in 64-token steps; the model fails on its third step. Its first two steps are
    in the stream's state already, so the stream cannot continue from memory: it goes back to its record
    (durable_seq; without a state folder it starts again empty), and the chunks resent from there give the
    undisturbed embedding. Before, the stream went on from a state holding the first 128 tokens of the chunk and
    applied them twice."""
    text = stream_text(2, 1200).encode()
    chunks = [text[:200], text[200:600], text[600:]]
    config = EngineConfig(max_step_tokens=64)
    with Engine.from_model("random:tiny", device="cpu", config=config,
                           state_dir=str(tmp_path / "s") if state_dir else None) as engine:
        engine.append("a", 1, chunks[0])
        run, calls = engine.runner.run, []

        def fails_on_the_third_step(*args, **kwargs):
            calls.append(1)
            if len(calls) == 3:
                raise RuntimeError("device lost")
            return run(*args, **kwargs)

        engine.runner.run = fails_on_the_third_step
        with pytest.raises(Exception, match="resend"):
            engine.append("a", 2, chunks[1])
        engine.runner.run = run
        info = engine.open("a")
        assert info.applied_seq == info.durable_seq == (1 if state_dir else 0), info
        assert (info.tokens > 0) == state_dir and info.tokens <= len(chunks[0]), info  # chunk 1, less its tail
        for seq in range(info.applied_seq + 1, 4):
            engine.append("a", seq, chunks[seq - 1])
        engine.append("a", 4, b"", flush=True)
        got = engine.embedding("a")
        engine.append("ref", 1, text, flush=True)
        assert engine.info("a").tokens == engine.info("ref").tokens == len(text)
        assert rel_err(got, engine.embedding("ref")) <= 1e-5


def test_a_failed_step_that_finds_a_stream_inside_a_chunk_says_to_resend_from_its_record():
    """A stream whose state held part of a chunk when its step failed leaves memory (continuing from it would run
    that part twice) and goes back to its durable record, here none: the error says to resend from seq 1 (not from
    seq 2, after its last applied chunk, which the stream no longer holds), and that resend gives the embedding of
    a run that never failed."""
    from streamret.errors import Unavailable

    text = stream_text(3, 600).encode()
    with Engine.from_model("random:tiny", device="cpu", config=EngineConfig(max_step_tokens=64)) as engine:
        engine.append("a", 1, text[:40])
        run, steps = engine.runner.run, []

        def second_step_fails(*args, **kwargs):
            steps.append(1)
            if len(steps) == 2:  # the first ran 64 tokens of chunk 2: the state holds part of it
                raise RuntimeError("the device went away")
            return run(*args, **kwargs)

        engine.runner.run = second_step_fails
        with pytest.raises(Unavailable, match=r"the model step failed .*held part of a chunk: it goes back to its "
                                              r"durable record, seq 0: resend from seq 1"):
            engine.append("a", 2, text[40:])
        engine.runner.run = run
        engine.append("a", 1, text[:40])
        engine.append("a", 2, text[40:], flush=True)
        engine.append("ref", 1, text, flush=True)
        assert rel_err(engine.embedding("a"), engine.embedding("ref")) <= 1e-5


def test_a_step_out_of_device_memory_names_the_fix_and_the_stream_goes_on_from_its_ack():
    """A step that runs out of device memory (several engine processes share a GPU) fails its streams with
    UNAVAILABLE naming the flags that lower the memory, not only the exception's type; the chunk resent gives the
    embedding of a run that never failed."""
    from streamret.errors import Unavailable

    text = stream_text(3, 600).encode()
    with Engine.from_model("random:tiny", device="cpu") as engine:
        engine.append("a", 1, text[:300])
        run = engine.runner.run

        def out_of_memory(*args, **kwargs):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 768.00 MiB.")

        engine.runner.run = out_of_memory
        with pytest.raises(Unavailable, match=r"ran out of device memory .*--engine-procs or --max-step-tokens"
                                              r".*back at seq 1: resend from seq 2"):
            engine.append("a", 2, text[300:])
        engine.runner.run = run
        engine.append("a", 2, text[300:], flush=True)
        engine.append("ref", 1, text, flush=True)
        assert engine.info("a").tokens == engine.info("ref").tokens
        assert rel_err(engine.embedding("a"), engine.embedding("ref")) <= 1e-5
