"""TextAssembler: pieces do not depend on where the bytes were cut; offsets, tail bound, bad UTF-8."""

import dataclasses
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamret.engine.text import TextAssembler, TextPiece, TextSnapshot, _piece
from streamret.model.tokenizer import HFTokenizer

WORDS = ["the", "naïve", "café", "日本語", "😀x", "a.", "end!", "(quote.)", "\n", "  ", "\t", "ok?", "€"]


def feed_all(chunks: list[bytes], flushes: list[bool], **kw) -> tuple[list, TextAssembler]:
    a = TextAssembler(**kw)
    pieces = []
    for chunk, flush in zip(chunks, flushes):
        pieces += a.feed(chunk, flush=flush)
    return pieces, a


def cut(data: bytes, points: list[int]) -> list[bytes]:
    bounds = [0, *sorted(points), len(data)]
    return [data[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


texts = st.lists(st.sampled_from(WORDS), max_size=40).map(lambda ws: " ".join(ws))


@settings(max_examples=150, deadline=None)
@given(data=st.data(), text=texts)
def test_pieces_cover_the_bytes_whatever_the_cuts(data, text):
    raw = text.encode()
    points = data.draw(st.lists(st.integers(0, len(raw)), max_size=8))
    chunks = cut(raw, points)
    flushes = data.draw(st.lists(st.booleans(), min_size=len(chunks), max_size=len(chunks)))
    pieces, a = feed_all(chunks, flushes)
    pieces += a.close()
    assert "".join(p.text for p in pieces) == text
    offset = 0
    for p in pieces:  # contiguous, and each piece's bytes are its text
        assert p.start_byte == offset and raw[p.start_byte : p.end_byte].decode() == p.text
        offset = p.end_byte
    assert offset == len(raw)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), text=texts)
def test_cuts_fall_before_whitespace_unless_flushed(data, text):
    raw = text.encode()
    chunks = cut(raw, data.draw(st.lists(st.integers(0, len(raw)), max_size=8)))
    a = TextAssembler(max_tail_bytes=1 << 20)
    done = 0
    for c in chunks:
        for p in a.feed(c):
            done = p.end_byte
        # what is handed out ends right before a space that follows a word: never inside a run of
        # whitespace, never before a newline or tab
        assert done == 0 or (raw[done : done + 1] == b" " and not raw[done - 1 : done].isspace())


@settings(max_examples=150, deadline=None)
@given(data=st.data(), text=texts)
def test_sentence_segments_do_not_depend_on_cuts(data, text):
    raw = text.encode()
    one, a = feed_all([raw], [False])
    one += a.close()
    chunks = cut(raw, data.draw(st.lists(st.integers(0, len(raw)), max_size=8)))
    many, a = feed_all(chunks, [False] * len(chunks), max_tail_bytes=1 << 20)
    many += a.close()

    def segments(pieces):
        out, cur = [], ""
        for p in pieces:
            if p.starts_segment and cur:
                out.append(cur)
                cur = ""
            cur += p.text
            if p.ends_segment:
                out.append(cur)
                cur = ""
        return out + ([cur] if cur else [])

    assert segments(many) == segments(one)


# with invalid bytes, and sentence ends followed by a newline: their segment's cut comes after the next word
CARRY_WORDS = [*WORDS, b"\xff", b"\xe2\x82", "\n\n", "\n1:2", "end.\nÉté", "。\n€"]


def as_text(raw: bytes) -> str:
    """Stream bytes as the front hands them out: each byte that is not valid UTF-8 becomes U+FFFD."""
    return re.sub("[\udc80-\udcff]", "\ufffd", raw.decode("utf-8", "surrogateescape"))


@settings(max_examples=150, deadline=None)
@given(data=st.data(), words=st.lists(st.sampled_from(CARRY_WORDS), max_size=40))
def test_each_piece_and_its_carry_are_their_bytes(data, words):
    """Byte offsets come from one cumulative count per emission: each piece's bytes, and the bytes of the
    carry (the next segment's start) at its end, are its text, with invalid bytes and short segments."""
    raw = b" ".join(w if isinstance(w, bytes) else w.encode() for w in words)
    chunks = cut(raw, data.draw(st.lists(st.integers(0, len(raw)), max_size=8)))
    flushes = data.draw(st.lists(st.booleans(), min_size=len(chunks), max_size=len(chunks)))
    pieces, a = feed_all(chunks, flushes, max_segment_bytes=data.draw(st.sampled_from([4, 16, 1024])))
    pieces += a.close()
    for p in pieces:
        assert as_text(raw[p.start_byte : p.end_byte]) == p.text
        carry = p.text[len(p.text) - p.carry_chars :]
        assert as_text(raw[p.end_byte - p.carry_bytes : p.end_byte]) == carry
        assert p.ends_segment or p.carry_chars == p.carry_bytes == 0


def test_sentence_and_line_boundaries():
    a = TextAssembler()
    pieces = a.feed(b'He said "stop." Then left! \n\nNext line x') + a.close()
    assert [(p.text, p.starts_segment, p.ends_segment) for p in pieces] == [
        ('He said "stop."', False, True),
        (" Then left!", False, True),
        (" \n\nNext line", False, False),  # the blank line was decided with the sentence before it
        (" x", False, True),  # the tail, handed out by close, which ends the segment
    ]
    # a newline right after a word is no safe cut (Metaspace keeps "end.\nNext" as one pre-token)
    # so the segment is cut at the next safe cut, and the text after the sentence end is carried over
    b = TextAssembler()
    pieces = b.feed(b"One end.\nNext line\t\tx y")
    assert [(p.text, p.ends_segment, p.carry_chars, p.carry_bytes) for p in pieces] == [
        ("One end.\nNext", True, 5, 5), (" line\t\tx", False, 0, 0)]


def test_safe_cut_is_linear_on_long_words_and_runs():
    a = TextAssembler(max_tail_bytes=1 << 26)
    assert a.feed(b"w" * 5_000_000) == []
    assert [len(p.text) for p in a.feed(b" " * 5_000_000)] == [5_000_000]  # the word; the spaces wait
    assert a.tail_bytes == 5_000_000
    pieces = a.feed(b"\n" * 5_000_000 + b"x y")
    # the whole run with the word after it, then " y" waits; the run holds a blank line: a new segment
    assert [(len(p.text), p.starts_segment) for p in pieces] == [(10_000_001, True)]


def test_chunk_mode_ends_a_segment_per_append():
    a = TextAssembler(segment_by="chunk")
    first = a.feed(b"one. two three")
    assert [(p.text, p.ends_segment) for p in first] == [("one. two", True)]
    assert a.feed(b"") == []
    assert [(p.text, p.ends_segment) for p in a.feed(b" four", flush=True)] == [(" three four", True)]


def test_split_code_point_is_kept_and_completed():
    a = TextAssembler()
    euro = "€".encode()
    assert [p.text for p in a.feed(b"x " + euro[:1])] == ["x"]
    assert a.snapshot() == TextSnapshot(b" " + euro[:1], 1, 0)  # the open segment's text starts at byte 0
    pieces = a.feed(euro[1:] + b" y", flush=True)
    assert "".join(p.text for p in pieces) == " € y"


def test_flush_keeps_an_incomplete_character_close_replaces_it():
    a = TextAssembler()
    pieces = a.feed("ab€".encode()[:-1], flush=True)
    assert "".join(p.text for p in pieces) == "ab"
    assert a.snapshot() == TextSnapshot("€".encode()[:-1], 2)
    (last,) = a.close()
    assert last.text == "\ufffd\ufffd" and (last.start_byte, last.end_byte) == (2, 4)


def test_invalid_bytes_become_one_replacement_each_wherever_cut():
    raw = b"ok \xff\xfe mid\xe2\x82 end \xc3"
    whole, a = feed_all([raw], [False])
    whole += a.close()
    parts, a = feed_all([raw[:4], raw[4:9], raw[9:]], [False, True, False])
    parts += a.close()
    want = "ok \ufffd\ufffd mid\ufffd\ufffd end \ufffd"
    assert "".join(p.text for p in whole) == "".join(p.text for p in parts) == want
    assert whole[-1].end_byte == parts[-1].end_byte == len(raw)


def test_tail_is_bounded():
    a = TextAssembler(max_tail_bytes=8)
    out = []
    for _ in range(5):
        out += a.feed(b"abcd")
        assert a.tail_bytes <= 8
    assert out  # the word outgrew the bound, so it was handed out without a whitespace cut
    assert "".join(p.text for p in out) + a.snapshot().tail.decode() == "abcd" * 5
    # an incomplete character is all that stays after a forced cut
    a = TextAssembler(max_tail_bytes=4)
    a.feed("xxxxxx€".encode()[:-1])
    assert a.snapshot().tail == "€".encode()[:-1]


def test_snapshot_restores_the_same_future():
    raw = "wörds and more wörds. €uro".encode()
    a = TextAssembler()
    first = a.feed(raw[:9])
    b = TextAssembler(snapshot=a.snapshot())
    assert [*first, *a.feed(raw[9:], flush=True)][len(first) :] == b.feed(raw[9:], flush=True)


def test_rejects_bad_settings():
    with pytest.raises(ValueError, match="max_tail_bytes"):
        TextAssembler(max_tail_bytes=2)
    with pytest.raises(ValueError, match="segment_by"):
        TextAssembler(segment_by="paragraph")


@pytest.mark.parametrize("style", ["gpt2", "llama", "metaspace"])
def test_pieces_tokenize_like_the_whole_text_with_hf_tokenizers(style):
    """Tokenizers trained in the test (tests/test_tokenizer.py) on text with runs of spaces, newlines
    and tabs: BPE merges "\\n\\n", Metaspace keeps "word\\nnext" whole, so only safe cuts concatenate."""
    import random

    from test_tokenizer import STYLES, sample_text

    tok = HFTokenizer.from_json(STYLES[style]())
    rng = random.Random(3)
    for seed in range(30):
        raw = sample_text(random.Random(seed), 30).encode()
        chunks = cut(raw, [rng.randrange(len(raw) + 1) for _ in range(rng.randrange(12))])
        pieces, a = feed_all(chunks, [False] * len(chunks), max_tail_bytes=1 << 20)
        pieces += a.close()
        assert [i for p in pieces for i in tok.encode(p.text)] == tok.encode(raw.decode()), [p.text for p in pieces]


def test_the_front_makes_the_same_frozen_pieces_as_the_dataclass():
    fields = [f.name for f in dataclasses.fields(TextPiece)]
    made = _piece(" é. x", 3, 10, True, True, 2, 2)
    want = TextPiece(" é. x", 3, 10, True, True, 2, 2)
    assert made == want and hash(made) == hash(want) and repr(made) == repr(want)
    assert list(vars(made)) == fields  # every field, in order, and nothing else
    assert (made.stripped, made.lead_bytes) == (want.stripped, want.lead_bytes)
    assert _piece("a", 0, 1, False) == TextPiece("a", 0, 1)  # the defaults
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.text = "other"
