"""The engine's tokenize stage: chunks waiting are tokenized together, a bad one fails alone, order holds."""

from __future__ import annotations

import random
import threading
from concurrent.futures import FIRST_COMPLETED, wait
from pathlib import Path

import numpy as np
import pytest

import streamret
from streamret.engine import Engine, EngineConfig
from streamret.engine.scheduler import WorkItem
from streamret.engine.text import TextSnapshot
from streamret.engine.tokenize_stage import Tokenized, TokenizeStage, _Group, in_process_cut, tokenize_items
from streamret.model.retnet import RetNetConfig, build_random
from streamret.model.spec import LoadedModel
from streamret.model.tokenizer import ByteTokenizer
from streamret.thread_cpu import child_processes


class CountingTokenizer(ByteTokenizer):
    """Bytes; counts encode_batch calls and fails any batch that holds "BAD"."""

    def __init__(self):
        self.calls: list[int] = []

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        self.calls.append(len(texts))
        if any("BAD" in t for t in texts):
            raise ValueError("this tokenizer refuses BAD")
        return super().encode_batch(texts)


TEXT = EngineConfig().text_params


class BothAtOnce(CountingTokenizer):
    """A batch ends only once another thread's batch has started too (two batches cut at the same time; with n,
    n batches)."""

    def __init__(self, n: int = 2):
        super().__init__()
        self.both = threading.Barrier(n, timeout=30)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        self.both.wait()
        return super().encode_batch(texts)


def item(sid: str, text: str, prev: WorkItem | None = None) -> WorkItem:
    """An accepted chunk of `text`, flushed (all its text handed out): the first of its stream unless prev."""
    raw = text.encode()
    return WorkItem(sid, 1, None, None, None, None, len(raw), raw=raw, ending="flush", prev=prev,
                    text_before=None if prev is not None else TextSnapshot(b"", 0))


def cut_with(tokenizer):
    return in_process_cut(tokenizer, TEXT)


def piece_bytes(result: Tokenized) -> list[int]:
    return [len(p.text.encode()) for p in result.layout.pieces]


def test_one_tokenizer_call_for_every_item_waiting_and_each_gets_its_own_tokens():
    tok = CountingTokenizer()
    got: list[tuple[WorkItem, Tokenized | BaseException]] = []
    done = threading.Event()

    def deliver(results):
        got.extend(results)
        if len(got) == 3:
            done.set()

    stage = TokenizeStage(tok, 260, deliver, TEXT, threads=1)
    texts = ["One. Two", "three", "Four. Five. Six"]
    items = [item(sid, text) for sid, text in zip("abc", texts)]
    with stage._cv:  # held: the three wait, and the thread then takes them together
        for it in items:
            stage.submit_many([it])
    assert done.wait(30)
    stage.close()
    assert tok.calls == [3]  # the three items in one call (bytes: an item's pieces as one text)
    assert [it for it, _ in got] == items
    for (it, result), text in zip(got, texts):
        assert isinstance(result, Tokenized)
        assert "".join(p.text for p in result.layout.pieces) == text and it.text_after == result.text_after
        assert result.tokens.tolist() == list(text.encode())
        assert result.ends.tolist() == np.cumsum(piece_bytes(result)).tolist()
    assert [len(r.layout.pieces) for _, r in got] == [2, 1, 3]  # cut at sentence ends
    # one call of three items (bucket 2: 3-4 items a call) and their bytes
    assert stage.stats() == {"tokenize_calls": 1, "tokenize_call_items": 3,
                             "tokenize_call_bytes": sum(len(t.encode()) for t in texts),
                             "tokenize_call_items_buckets": [0, 0, 1, 0, 0, 0, 0, 0, 0]}


def test_a_bad_item_fails_alone_and_its_neighbours_are_tokenized():
    tok = CountingTokenizer()
    results = tokenize_items(cut_with(tok), 260, [item("a", "fine"), item("b", "a BAD one"), item("c", "also fine")])
    assert isinstance(results[1], ValueError) and "BAD" in str(results[1])
    assert [r.tokens.tolist() for r in (results[0], results[2])] == [list(b"fine"), list(b"also fine")]
    assert tok.calls == [3, 1, 1, 1]  # the batch, then each item alone (bytes: one text per item)


def test_a_streams_chunks_continue_one_another_and_fail_after_a_failed_one():
    """A chunk's text starts where its stream's chunk before it ends, in the same batch or in a later one; a
    chunk after one whose cut failed fails too, in the same batch or later."""
    tok = CountingTokenizer()
    first = item("s", "The end is")
    first.ending = ""  # not flushed: "is" waits for what follows it
    second = item("s", " near. Next", prev=first)
    third = item("s", " one.", prev=second)
    results = tokenize_items(cut_with(tok), 260, [first, second])
    assert ["".join(p.text for p in r.layout.pieces) for r in results] == ["The end", " is near. Next"]
    assert first.prev is None and second.prev is None and second.text_after.offset == len("The end is near. Next")
    [last] = tokenize_items(cut_with(tok), 260, [third])  # in a later batch, from where `second` ended
    pieces = last.layout.pieces
    assert [p.text for p in pieces] == [" one."] and pieces[0].start_byte == len("The end is near. Next")
    bad = item("t", "")
    bad.raw = 123  # its cut fails (not bytes)
    after_bad = item("t", " more", prev=bad)
    results = tokenize_items(cut_with(tok), 260, [bad, after_bad])
    assert isinstance(results[0], TypeError) and "earlier chunk" in str(results[1])
    [r] = tokenize_items(cut_with(tok), 260, [item("t", " still more", prev=after_bad)])
    assert isinstance(r, ValueError) and "earlier chunk" in str(r)
    # a chunk that fails only in the tokenizer fails alone: the engine then drops its stream's later chunks
    results = tokenize_items(cut_with(tok), 260, [(b := item("u", "BAD")), item("u", " fine", prev=b)])
    assert isinstance(results[0], ValueError) and isinstance(results[1], Tokenized)


def test_a_cut_that_fails_whole_fails_its_batch_and_nothing_else():
    """A tokenizer process that died twice on a batch raises out of the cut: every item of the batch fails with
    it (the stage thread goes on), and a stream's next item then fails as after a failed cut."""
    def died(requests):
        raise RuntimeError("the tokenizer process died twice on one batch")

    first = item("a", "x")
    results = tokenize_items(died, 260, [first, item("b", "y")])
    assert all(isinstance(r, RuntimeError) for r in results) and first.prev is None
    [r] = tokenize_items(cut_with(ByteTokenizer()), 260, [item("a", " z", prev=first)])
    assert "earlier chunk" in str(r)


def test_ids_past_the_vocabulary_fail_the_item_with_a_clear_error():
    [result] = tokenize_items(cut_with(ByteTokenizer()), 100, [item("a", "\u00e9")])  # bytes 195, 169 >= 100
    assert "outside the model's vocabulary [0, 100)" in str(result)


def test_close_tokenizes_what_is_queued_then_ends_the_threads():
    got = []
    stage = TokenizeStage(ByteTokenizer(), 260, got.extend, TEXT, threads=2)
    for i in range(50):
        stage.submit_many([item(f"s{i}", "some text ")])
    stage.close()
    assert len(got) == 50 and all(isinstance(r, Tokenized) for _, r in got)
    assert not any(t.is_alive() for t in stage.threads)


def test_many_chunks_from_one_caller_thread_apply_in_order_per_stream():
    """One calling thread, many streams and chunks: submit_append returns before tokenizing, and every
    stream ends as if its text came in one piece."""
    model = build_random(RetNetConfig(), seed=3).eval()
    with Engine(LoadedModel(model, ByteTokenizer(), "bytes")) as e:
        texts = {f"s{i}": [f"chunk {j} of stream {i}. " for j in range(12)] for i in range(16)}
        futures = [e.submit_append(sid, j + 1, chunk) for j in range(12) for sid, chunks in texts.items()
                   for chunk in chunks[j : j + 1]]
        acks = [f.result(60) for f in futures]
        assert all(a.applied_seq >= a.seq for a in acks)  # a chunk's ack comes after the chunks before it
        for sid, chunks in texts.items():
            e.flush(sid)
            e.append("whole-" + sid, 1, "".join(chunks), flush=True)
            a, b = e.embedding(sid), e.embedding("whole-" + sid)
            assert np.linalg.norm(a - b) <= 1e-5 * np.linalg.norm(b)


class PieceByPieceTokenizer:
    """Bytes, with encode and encode_batch only (no encode_pieces): the stage falls back to encode_batch."""

    name, vocab_size, eos_id = "plain", 256, None

    def __init__(self):
        self.calls: list[list[str]] = []

    def encode(self, text: str) -> list[int]:
        return list(text.encode())

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        self.calls.append(texts)
        return [[10_000] * len(t.encode()) if "BAD" in t else self.encode(t) for t in texts]

    def decode(self, ids: list[int]) -> str:
        return bytes(ids).decode()


def test_a_tokenizer_without_encode_pieces_gets_every_piece_in_one_call():
    tok = PieceByPieceTokenizer()
    texts = ["One. Tw\u00f6", "", "three"]
    results = tokenize_items(cut_with(tok), 256, [item(sid, text) for sid, text in zip("abc", texts)])
    assert tok.calls == [[p.text for r in results for p in r.layout.pieces]] and len(tok.calls[0]) == 3
    for r, text in zip(results, texts):
        assert r.tokens.tolist() == list(text.encode())
        assert r.ends.tolist() == np.cumsum(piece_bytes(r)).tolist()
        assert r.layout.lens.tolist() == piece_bytes(r)


def test_ids_past_the_vocabulary_fail_only_the_items_that_hold_them():
    tok = PieceByPieceTokenizer()
    items = [item("a", "fine"), item("b", "x. BAD"), item("c", ""), item("d", "ok")]
    results = tokenize_items(cut_with(tok), 256, items)
    assert len(tok.calls) == 1  # no retry: the ids tell which item is bad
    assert "outside the model's vocabulary" in str(results[1])
    assert [results[k].tokens.tolist() for k in (0, 2, 3)] == [list(b"fine"), [], list(b"ok")]


def test_a_tokenizer_that_gives_other_piece_ends_fails_each_item_with_what_it_gave():
    class WrongEnds(ByteTokenizer):
        def encode_pieces(self, items):
            ids, ends = super().encode_pieces(items)
            return ids, ends[:-1]

    results = tokenize_items(cut_with(WrongEnds()), 260, [item("a", "x. Y"), item("b", "z")])
    assert all(isinstance(r, ValueError) and "one end per piece" in str(r) for r in results)


def test_an_item_holds_no_array_of_its_batch():
    """Each item's tokens and layout arrays are its own: an item left queued does not keep its batch's arrays."""
    results = tokenize_items(cut_with(ByteTokenizer()), 260, [item("a", "One. Two"), item("b", "three"),
                                                              item("c", "")])
    for r in results:
        spans = r.layout.step_spans
        arrays = [r.tokens, r.layout.lens, r.layout.char_offsets, spans.lens, spans.per_stream, spans.cut_before,
                  spans.cut_after, spans.last, spans.facts]
        assert all(a.base is None for a in arrays)


def test_what_waits_is_split_between_the_threads_that_wait_for_work():
    """Two idle threads and two streams of two items waiting: each thread takes one stream's two, so the two
    batches run at once instead of one thread cutting all four while the other waits."""
    tok = BothAtOnce()
    got: list = []
    done = threading.Event()

    def deliver(results):
        got.extend(results)
        if len(got) == 4:
            done.set()

    stage = TokenizeStage(tok, 260, deliver, TEXT, threads=2, min_batch_bytes=1)
    for _ in range(1000):  # both threads wait for work before anything is submitted
        with stage._cv:
            if stage._idle == 2:
                for sid in ("a", "b"):
                    first = item(sid, "same size")
                    stage.submit_many([first, item(sid, "same size", prev=first)])
                break
        threading.Event().wait(0.01)
    assert done.wait(30)
    stage.close()
    assert sorted(tok.calls) == [2, 2]
    assert sorted(it.stream_id for it, _ in got) == ["a", "a", "b", "b"]


def test_a_thread_passes_over_a_stream_another_thread_is_cutting():
    """One stream's chunk blocks its thread: the other thread takes the other streams' items, and the blocked
    stream's next item waits for the blocked one (its text starts where that one ends)."""
    class Gated(CountingTokenizer):
        def __init__(self):
            super().__init__()
            self.entered, self.gate = threading.Event(), threading.Event()

        def encode_batch(self, texts):
            if any("SLOW" in t for t in texts):
                self.entered.set()
                assert self.gate.wait(30)
            return super().encode_batch(texts)

    tok = Gated()
    got: list = []
    stage = TokenizeStage(tok, 260, got.extend, TEXT, threads=2, min_batch_bytes=1)
    slow = item("slow", "SLOW one. ")
    stage.submit_many([slow])
    assert tok.entered.wait(30)
    after = item("slow", "Two.", prev=slow)
    stage.submit_many([after, item("fast", "quick")])
    for _ in range(1000):
        if any(it.stream_id == "fast" for it, _ in got):
            break
        threading.Event().wait(0.01)
    assert [it.stream_id for it, _ in got] == ["fast"]  # the slow stream's second item still waits
    tok.gate.set()
    stage.close()
    assert [it.stream_id for it, _ in got] == ["fast", "slow", "slow"]
    assert got[2][1].layout.pieces[0].start_byte == len("SLOW one. ")


def test_chunks_accepted_as_the_stage_closes_fail_as_resendable():
    """A shutdown that closes the tokenize stage between a chunk's acceptance and its hand-over: the chunk's
    Future fails with Unavailable (resend), the caller gets no error of the stage's own."""
    import pytest

    from streamret.errors import Unavailable

    model = build_random(RetNetConfig(), seed=3).eval()
    with Engine(LoadedModel(model, ByteTokenizer(), "bytes")) as e:
        e.append("s", 1, "first chunk. ")
        e._tokenize.close()  # as shutdown() does, here just before the hand-over
        single = e.submit_append("s", 2, "second chunk. ")
        many = e.submit_appends([("t", 1, "one. ", False, False, None), ("t", 2, "two. ", False, False, None)])
        for future in [single, *many]:
            with pytest.raises(Unavailable, match="resend"):
                future.result(30)
        assert e.info("s").applied_seq == 1
        stream = e.store.streams["s"]
        assert stream.accepted_seq == 1 and not stream.pending  # the text front taken back: seq 2 may come again


# ----------------------------------------------------------------------------------------------
# tokenize_procs: each tokenize thread's batches in a tokenizer process of its own


def default_tokenizer():
    from streamret.model.tokenizer import HFTokenizer

    return HFTokenizer(Path(streamret.__file__).parent / "assets" / "default")


def test_a_tokenizer_process_cuts_and_tokenizes_as_the_engine_process_does_and_survives_its_death():
    from streamret.engine.text import TextAssembler, piece_columns, pieces_of_columns
    from streamret.engine.tokenize_worker import TokenizerProcess, child_spec

    texts = ["The engine reads arbitrarily long streams. Retention (see the paper) keeps them. And",
             " naïve café — 日本. Then", "", " C++ -- ~`|{}\t[d]\n\n x" * 30]
    requests = [(TextSnapshot(b"", 0), texts[0].encode(), ""), (0, texts[1].encode(), ""),
                (TextSnapshot(b"ab", 7), texts[2].encode(), "flush"), (TextSnapshot(b"", 0), texts[3].encode(), "")]

    def same(got, want):  # the child's Cuts are this process's
        for g, w in zip(got, want, strict=True):
            assert g.front == w.front and g.columns[0] == w.columns[0]
            for a, b in ((g.ids, w.ids), (g.lens, w.lens), (g.columns[1], w.columns[1]), (g.columns[2], w.columns[2])):
                assert np.array_equal(a, b)
        pieces = [p for r in want for p in pieces_of_columns(*r.columns[:2])]  # the columns are the pieces'
        assert all(np.array_equal(a, b) for a, b in zip(
            piece_columns(pieces)[1:], [np.concatenate([r.columns[c] for r in want]) for c in (1, 2)], strict=True))
        front = TextAssembler(**TEXT)  # and they are the text front's own pieces, as a stream reads them
        own = [front.feed(texts[0].encode()), front.feed(texts[1].encode())]
        assert [pieces_of_columns(*r.columns[:2]) for r in want[:2]] == own

    for tok in (default_tokenizer(), ByteTokenizer()):
        want = in_process_cut(tok, TEXT)(requests)
        assert all(isinstance(w, tuple) for w in want) and len(want[0].columns[0]) >= 2  # sentence cuts in the first
        proc = TokenizerProcess(child_spec(tok), TEXT)
        try:
            for _ in range(2):  # the second time from the child's word cache
                same(proc.cut_and_encode(requests), want)
            bad = proc.cut_and_encode([(TextSnapshot(b"", 0), 123, ""), (0, b"more", "")])  # not bytes
            assert "failed: TypeError" in str(bad[0]) and "earlier chunk" in str(bad[1])  # and the child goes on
            proc._proc.kill()  # a child killed (out of memory, say): started again for the same batch
            proc._proc.wait()
            same(proc.cut_and_encode(requests), want)
        finally:
            child = proc._proc
            proc.close()
        assert child.poll() is not None, "close() must end the child"


def test_a_tokenizer_no_child_can_rebuild_stays_in_the_engine_process(caplog):
    got = []
    stage = TokenizeStage(CountingTokenizer(), 260, got.extend, TEXT, threads=1, procs=True)
    stage.submit_many([item("a", "some text")])
    stage.close()
    assert stage.spec is None and "cannot be rebuilt" in caplog.text
    assert isinstance(got[0][1], Tokenized) and stage.tokenizer.calls == [1]


def test_an_engine_with_tokenize_procs_reads_streams_as_one_without():
    """The default tokenizer in two child processes: every stream's tokens, embedding and segments as in-process,
    with steps so small that chunks are split across them (a split chunk's pieces are made from the columns the
    child sent)."""
    model = build_random(RetNetConfig(vocab_size=30522), seed=4).eval()
    loaded = LoadedModel(model, default_tokenizer(), "default-tokenizer")
    texts = {f"s{i}": [f"Chunk {j} of stream {i}: retention (g^n) keeps it. " for j in range(6)] for i in range(8)}
    results = []
    for procs in (True, False, "split"):  # (and with split_bursts, in the child processes)
        config = EngineConfig(tokenize_procs=bool(procs), max_step_tokens=40, tokenize_split_bursts=procs == "split")
        with Engine(loaded, config=config) as e:
            futures = [e.submit_append(sid, j + 1, chunks[j]) for j in range(6) for sid, chunks in texts.items()]
            [f.result(60) for f in futures]
            stats = e.stats()  # every chunk went through one cutting call, the calls counted by items a call
            assert stats["tokenize_call_items"] == 48 and 1 <= stats["tokenize_calls"] <= 48
            assert stats["tokenize_call_bytes"] == sum(len(c.encode()) for chunks in texts.values() for c in chunks)
            assert sum(stats["tokenize_call_items_buckets"]) == stats["tokenize_calls"]
            results.append({sid: (e.flush(sid).tokens, e.embedding(sid),
                                  [(s.text, s.start_byte, s.end_byte) for s in e.segments(sid)]) for sid in texts})
            if procs:
                assert e._tokenize.spec[0] == "hf" and len(tokenizer_children()) == 2
    assert not tokenizer_children(), "shutdown must end the tokenizer processes"
    for sid in texts:  # the same tokens; steps cut them differently, so float32 sums may differ in the last bits
        n_without, without, segments_without = results[1][sid]
        for n_with, with_procs, segments_with in (results[0][sid], results[2][sid]):
            assert n_with == n_without > 6 * 8 and segments_with == segments_without and len(segments_with) == 6
            assert np.linalg.norm(with_procs - without) <= 1e-5 * np.linalg.norm(without)


def windowed_text(rng: random.Random, n_bytes: int) -> bytes:
    """Sentences of words, marks, abbreviations, lists, blank lines and non-ASCII characters, about n_bytes long."""
    words = ["retention", "keeps", "the", "state", "of", "every", "stream", "naïve", "café", "日本", "😀", "e.g.",
             "Dr.", "No.", "5", "(see", "it)", "x\u00a0y", "C++", "U.S.", "a.m.", "--flag", "foo.c", "3.14"]
    out = []
    while sum(map(len, out)) < n_bytes:
        sentence = " ".join(rng.choice(words) for _ in range(rng.randrange(3, 14)))
        out.append(sentence[:1].upper() + sentence[1:] + rng.choice([". ", "! ", "? ", "... ", ".\n\n", "\n- ", ". "]))
    return "".join(out).encode()


def test_the_gpu_settings_read_windowed_streams_from_threads_as_one_chunk_each():
    """What a GPU engine runs, on the CPU: tokenizer processes on three threads with split bursts, the draining-step
    cap, steps so small that chunks split across them, and four threads each keeping four chunks in flight for its
    streams, cut at random bytes (inside characters and words). Every stream's tokens, embedding, kept segments
    and summary equal those of a plain engine that reads its text in one chunk (the longest streams close more
    segments than they keep: what stays does not depend on the steps either, docs/DESIGN.md)."""
    rng = random.Random(7)
    model = build_random(RetNetConfig(vocab_size=30522), seed=5).eval()
    loaded = LoadedModel(model, default_tokenizer(), "default-tokenizer")
    texts = {f"s{i}": windowed_text(rng, rng.randrange(50, 2500 if i % 6 else 9000)) for i in range(24)}
    chunks = {}
    for sid, raw in texts.items():
        bounds = [0, *sorted(rng.randrange(len(raw) + 1) for _ in range(rng.randrange(12))), len(raw)]
        chunks[sid] = [raw[a:b] for a, b in zip(bounds, bounds[1:])]

    def read(e: Engine) -> dict:
        out = {}
        for sid in texts:
            tokens = e.flush(sid).tokens
            summary = [(s.text, s.start_byte, s.end_byte) for s in e.summarize(sid, k=4).segments]
            out[sid] = (tokens, e.embedding(sid), [(s.text, s.start_byte, s.end_byte) for s in e.segments(sid)],
                        summary)
        return out

    def drive(e: Engine, sids: list[str], failures: list) -> None:
        try:
            sent = dict.fromkeys(sids, 0)
            in_flight: dict = {}
            while True:
                for sid in sids:
                    while sent[sid] < len(chunks[sid]) and list(in_flight.values()).count(sid) < 4:
                        in_flight[e.submit_append(sid, sent[sid] + 1, chunks[sid][sent[sid]])] = sid
                        sent[sid] += 1
                if not in_flight:
                    return
                done, _ = wait(list(in_flight), timeout=60, return_when=FIRST_COMPLETED)
                assert done, "no chunk was acked within 60 s"
                for f in done:
                    assert not f.result().duplicate
                    del in_flight[f]
        except BaseException as exc:  # noqa: BLE001  (reported by the test's thread)
            failures.append(exc)

    config = EngineConfig(tokenize_procs=True, tokenizer_threads=3, tokenize_split_bursts=True,
                          draining_step_chunks=2, max_step_tokens=256, durable_every_chunks=0)
    with Engine(loaded, config=config) as e:
        failures: list = []
        sids = list(texts)
        threads = [threading.Thread(target=drive, args=(e, sids[k::4], failures)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not failures and not any(t.is_alive() for t in threads), failures
        got = read(e)
        assert max(e.stats()["recent_step_batch_sizes"]) > 1
    with Engine(loaded, config=EngineConfig(tokenize_procs=False, tokenizer_threads=1)) as plain:
        for sid, raw in texts.items():
            plain.append(sid, 1, raw)
        want = read(plain)
    for sid in texts:
        (n, emb, segments, summary), (n_want, emb_want, segments_want, summary_want) = got[sid], want[sid]
        assert n == n_want and segments == segments_want and summary == summary_want, sid
        assert len(segments) > 0 and (len(texts[sid]) < 5000 or len(segments) >= 48)  # (past the bound: ranked)
        assert np.linalg.norm(emb - emb_want) <= 1e-5 * np.linalg.norm(emb_want), sid


def tokenizer_children() -> list[int]:
    """Live child processes of this one running tokenize_worker.py (Linux /proc)."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc")
    return [pid for pid, _ in child_processes(b"tokenize_worker")]


class BlockingTokenizer(ByteTokenizer):
    """Bytes; a batch holding "BLOCK" waits for `release`; records each call's texts."""

    def __init__(self):
        self.release, self.blocked = threading.Event(), threading.Event()
        self.calls: list[list[str]] = []

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        self.calls.append(list(texts))
        if any("BLOCK" in t for t in texts):
            self.blocked.set()
            assert self.release.wait(30)
        return super().encode_batch(texts)


@pytest.mark.parametrize("join_bytes, alone", [(0, True), (1 << 20, False)])
def test_an_idle_thread_joins_a_busy_one_only_once_enough_waits(join_bytes, alone):
    tok = BlockingTokenizer()
    got: list = []
    stage = TokenizeStage(tok, 260, got.extend, TEXT, threads=2, join_bytes=join_bytes, join_wait_s=60)
    stage.submit_many([item("a", "BLOCK here")])
    assert tok.blocked.wait(30)  # one thread is cutting a's chunk
    small = [item(sid, f"chunk {sid}") for sid in "bcd"]
    for it in small:  # trickling in one by one, as acks free a window
        stage.submit_many([it])
        if alone:  # (0: the idle thread takes each at once)
            for _ in range(300):
                if any(f"chunk {it.stream_id}" in "".join(c) for c in tok.calls):
                    break
                threading.Event().wait(0.01)
    threading.Event().wait(0.2)
    taken_while_busy = [c for c in tok.calls[1:]]
    tok.release.set()
    stage.close()
    assert sorted(it.stream_id for it, _ in got) == list("abcd")
    if alone:
        assert len(taken_while_busy) == 3  # each small chunk by itself, beside the busy thread
    else:
        assert taken_while_busy == []  # they waited for the busy thread ...
        assert tok.calls[1:] == [["chunk b", "chunk c", "chunk d"]]  # ... and went in one batch


@pytest.mark.parametrize("join_bytes, calls", [(30, 1), (20, 2)])
def test_a_thread_takes_it_all_when_what_it_would_leave_makes_no_other_join(join_bytes, calls):
    """Both threads idle, 40 bytes arrive: the first would take its half (20 bytes). With join_bytes above what it
    would leave, it takes all of it (before, it took its half and the rest waited for it to finish: steps of half
    as many streams, bench/RESULTS.md session 25); with join_bytes 20 the rest is enough to join on, as before.
    Without split_bursts (the engine's default: the next tests)."""
    tok = BlockingTokenizer()
    got: list = []
    stage = TokenizeStage(tok, 260, got.extend, TEXT, threads=2, join_bytes=join_bytes, min_batch_bytes=1,
                          split_bursts=False)
    for _ in range(300):
        if stage._idle == 2:
            break
        threading.Event().wait(0.01)
    stage.submit_many([item(sid, f"{sid}-23456789") for sid in "abcd"])  # 10 bytes each
    stage.close()
    assert sorted(it.stream_id for it, _ in got) == list("abcd")
    assert len(tok.calls) == calls and sorted(sum(tok.calls, [])) == [f"{sid}-23456789" for sid in "abcd"]


def test_split_bursts_cuts_a_burst_on_two_idle_threads_and_delivers_it_in_one_call():
    """split_bursts: both threads idle, 40 bytes arrive and join_bytes is above the 20 the first would leave (without
    it that thread takes it all, as above): it takes its half, the idle thread the rest at once (the two batches
    run at the same time: each waits for the other), and one deliver call carries all four items."""
    tok = BothAtOnce()
    deliveries: list = []
    stage = TokenizeStage(tok, 260, deliveries.append, TEXT, threads=2, join_bytes=30, min_batch_bytes=1,
                          split_bursts=True)
    for _ in range(300):
        if stage._idle == 2:
            break
        threading.Event().wait(0.01)
    stage.submit_many([item(sid, f"{sid}-23456789") for sid in "abcd"])  # 10 bytes each
    for _ in range(300):
        if deliveries:
            break
        threading.Event().wait(0.01)
    stage.close()
    assert sorted(tok.calls) == [2, 2]
    assert [sorted(it.stream_id for it, _ in d) for d in deliveries] == [list("abcd")]
    stats = stage.stats()  # two calls of two items each (bucket 1), however they were delivered
    assert (stats["tokenize_calls"], stats["tokenize_call_items"], stats["tokenize_call_bytes"]) == (2, 4, 40)
    assert stats["tokenize_call_items_buckets"][:3] == [0, 2, 0]
    assert all(isinstance(r, Tokenized) for _, r in deliveries[0])


def test_split_bursts_shares_a_burst_among_every_idle_thread():
    """Four idle threads, a burst of four streams' two chunks each: each thread takes one stream's two (its share,
    whole streams), the four batches run at the same time (each waits for the others) and one deliver call carries
    all eight items."""
    tok = BothAtOnce(4)
    deliveries: list = []
    stage = TokenizeStage(tok, 260, deliveries.append, TEXT, threads=4, join_bytes=1 << 10, min_batch_bytes=1,
                          split_bursts=True)
    for _ in range(300):
        if stage._idle == 4:
            break
        threading.Event().wait(0.01)
    burst = []
    for sid in "abcd":
        first = item(sid, f"{sid}-23456789")
        burst += [first, item(sid, f"{sid}-23456789", prev=first)]
    stage.submit_many(burst)
    for _ in range(300):
        if deliveries:
            break
        threading.Event().wait(0.01)
    stage.close()
    assert tok.calls == [2, 2, 2, 2]
    assert [sorted(it.stream_id for it, _ in d) for d in deliveries] == [sorted("abcd" * 2)]
    assert all(isinstance(r, Tokenized) for _, r in deliveries[0])


def test_a_batch_takes_all_the_waiting_items_of_each_stream_it_takes():
    """Past its byte limit a batch still takes the later items of the streams it holds (no other thread could cut
    them meanwhile), up to max_batch_bytes, but no item of a stream it passed over, whose items go in order."""
    stage = TokenizeStage(CountingTokenizer(), 260, lambda results: None, TEXT, threads=1, max_batch_bytes=40)
    stage.close()
    a1, b1, c1 = item("a", "x" * 10), item("b", "x" * 10), item("c", "x" * 10)
    a2, b2, c2 = item("a", "x" * 10, prev=a1), item("b", "x" * 5, prev=b1), item("c", "x" * 2, prev=c1)
    a3 = item("a", "x" * 10, prev=a2)
    # limit 15: a1 fits, b1 is over (b passed over), a2 and a3 are a's (to 30), c1 is over, b2 is b's, c2 c's
    assert stage._batch([a1, b1, a2, c1, a3, b2, c2], 15) == [a1, a2, a3]
    # max_batch_bytes bounds it: a3 would make 45 of 40, so a's items stop at a2 (and a3 is not taken later)
    big = item("a", "x" * 25, prev=a2)
    assert stage._batch([a1, a2, big, item("a", "x", prev=big)], 15) == [a1, a2]
    # a small item of another stream that still fits under the limit is taken
    small = item("c", "x" * 4)
    assert stage._batch([a1, item("b", "x" * 30), small], 15) == [a1, small]


def test_a_split_burst_whose_rest_no_thread_took_is_delivered_alone():
    """The thread that split a burst finishes before any other took the rest: its batch goes out alone, and the
    rest is then an ordinary batch (no group waits for a thread that never joins)."""
    stage = TokenizeStage(CountingTokenizer(), 260, lambda results: None, TEXT, threads=1, split_bursts=True)
    batch = [item("a", "some text")]
    with stage._cv:
        stage._busy.add("a")
        stage._cutting += 1
        group = stage._handoff = _Group()
    results = [(batch[0], "done")]
    assert stage._done(batch, group, results) == results and stage._handoff is None
    joined = _Group(pending=2)  # a group whose other batch is still being cut keeps this one's results
    with stage._cv:
        stage._cutting += 1
    assert stage._done(batch, joined, results) is None and joined.results == results
    stage.close()


def test_a_chunk_waits_for_a_slow_batch_at_most_join_wait_s():
    """One thread is stuck on a slow batch; another stream's small chunk (far below join_bytes) is taken by the
    idle thread once it has waited join_wait_s, not held up until the slow batch ends."""
    tok = BlockingTokenizer()
    got: list = []
    stage = TokenizeStage(tok, 260, got.extend, TEXT, threads=2, join_bytes=1 << 20, join_wait_s=0.05)
    stage.submit_many([item("a", "BLOCK here")])
    assert tok.blocked.wait(30)
    stage.submit_many([item("b", "small chunk")])
    for _ in range(300):
        if [it.stream_id for it, _ in got] == ["b"]:
            break
        threading.Event().wait(0.01)
    assert [it.stream_id for it, _ in got] == ["b"]  # delivered while a's batch is still stuck
    tok.release.set()
    stage.close()
    assert sorted(it.stream_id for it, _ in got) == ["a", "b"]


def test_an_idle_thread_takes_a_chunk_at_once_while_the_consumer_waits_for_work():
    """With the step loop idle (`hungry`), gathering chunks behind a busy thread would only delay the next step:
    the idle thread takes a small chunk at once, far below join_bytes and join_wait_s; while the loop is busy it
    leaves it, and `wake` (the loop going idle) makes it look again."""
    tok = BlockingTokenizer()
    got: list = []
    idle = threading.Event()
    stage = TokenizeStage(tok, 260, got.extend, TEXT, threads=2, join_bytes=1 << 20, join_wait_s=60,
                          hungry=idle.is_set)
    stage.submit_many([item("a", "BLOCK here")])
    assert tok.blocked.wait(30)
    stage.submit_many([item("b", "small chunk")])
    threading.Event().wait(0.2)
    assert got == []  # the loop is busy: b waits for the busy thread
    idle.set()
    stage.wake()
    for _ in range(300):
        if [it.stream_id for it, _ in got] == ["b"]:
            break
        threading.Event().wait(0.01)
    assert [it.stream_id for it, _ in got] == ["b"]  # taken beside the stuck batch
    stage.submit_many([item("c", "another one")])  # arriving while the loop waits: taken at once
    for _ in range(300):
        if len(got) == 2:
            break
        threading.Event().wait(0.01)
    assert [it.stream_id for it, _ in got] == ["b", "c"]
    tok.release.set()
    stage.close()
    assert sorted(it.stream_id for it, _ in got) == ["a", "b", "c"]


def test_an_idle_thread_joins_once_the_waiting_bytes_reach_join_bytes():
    tok = BlockingTokenizer()
    got: list = []
    stage = TokenizeStage(tok, 260, got.extend, TEXT, threads=2, join_bytes=20, min_batch_bytes=1, join_wait_s=60)
    stage.submit_many([item("a", "BLOCK here")])
    assert tok.blocked.wait(30)
    stage.submit_many([item("b", "ten bytes.")])  # 10 bytes wait: not enough
    threading.Event().wait(0.2)
    assert len(tok.calls) == 1
    stage.submit_many([item("c", "ten bytes!")])  # 20: the idle thread takes both
    for _ in range(300):
        if len(tok.calls) == 2:
            break
        threading.Event().wait(0.01)
    assert tok.calls[1:] == [["ten bytes.", "ten bytes!"]]
    tok.release.set()
    stage.close()
    assert sorted(it.stream_id for it, _ in got) == list("abc")
    with pytest.raises(ValueError, match="join_bytes must be >= 0"):
        TokenizeStage(tok, 260, got.extend, TEXT, join_bytes=-1)
    with pytest.raises(ValueError, match="join_wait_s must be >= 0"):
        TokenizeStage(tok, 260, got.extend, TEXT, join_wait_s=-1)
    with pytest.raises(ValueError, match="tokenize_join_bytes must be >= 0 .*got -1"):
        EngineConfig(tokenize_join_bytes=-1)
    for bad in (-0.001, 1.5):
        with pytest.raises(ValueError, match=f"tokenize_join_wait_s must lie in \\[0, 1\\] seconds .*got {bad}"):
            EngineConfig(tokenize_join_wait_s=bad)
