"""Sentence segments on real text: where they start and end, their size, chunk invariance, and the summary
of a glossary (issue 17, item 8)."""

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamret.engine import Engine, EngineConfig
from streamret.engine.segments import Segment, SegmentTracker, select_summary
from streamret.engine.sentences import candidates, decide, ends
from streamret.engine.text import TextAssembler, TextSnapshot

# King James Bible, Project Gutenberg layout (lines wrapped at 70, CRLF, verses split by blank lines)
KJV = (
    "1:1 In the beginning God created the heaven and the earth.\r\n\r\n"
    "1:2 And the earth was without form, and void; and darkness was upon\r\n"
    "the face of the deep. And the Spirit of God moved upon the face of the\r\n"
    "waters.\r\n\r\n"
    "1:3 And God said, Let there be light: and there was light.\r\n\r\n"
    "1:4 And God saw the light, that it was good: and God divided the light\r\n"
    "from the darkness.\r\n\r\n"
    "1:11 Then said they unto him, What shall we do unto thee, that the sea\r\n"
    "may be calm unto us? for the sea wrought, and was tempestuous.\r\n\r\n"
    "1:12 And he said unto them, Take me up, and cast me forth into the sea;\r\n"
    "so shall the sea be calm unto you: for I know that for my sake this\r\n"
    "great tempest is upon you.\r\n"
)
KJV_SENTENCES = [
    "1:1 In the beginning God created the heaven and the earth.",
    "1:2 And the earth was without form, and void; and darkness was upon\r\nthe face of the deep.",
    "And the Spirit of God moved upon the face of the\r\nwaters.",
    "1:3 And God said, Let there be light: and there was light.",
    "1:4 And God saw the light, that it was good: and God divided the light\r\nfrom the darkness.",
    "1:11 Then said they unto him, What shall we do unto thee, that the sea\r\n"
    "may be calm unto us? for the sea wrought, and was tempestuous.",
    "1:12 And he said unto them, Take me up, and cast me forth into the sea;\r\n"
    "so shall the sea be calm unto you: for I know that for my sake this\r\n"
    "great tempest is upon you.",
]

PROSE = (
    "CHAPTER I.\n\n"
    "Mr. Sherlock Holmes, who was usually very late in the mornings, sat at\n"
    "the breakfast table. \"Well, Watson, what do you make of it?\" he asked. I\n"
    "said that Dr. J. H. Mortimer, M.R.C.S., had left it at 9 a.m. on Jan. 5, i.e.\n"
    "before we were up. The stick cost 3.50 dollars (see Fig. 2 and No. 7 in vol. 2).\n"
    "\"Excellent!\" cried he. It weighed about 1.5 kg.\n\n"
    "1. Introduction to the case\n"
    "2. The curse of the Baskervilles\n\n"
    "The U.S. edition followed in 1902. Then came the rest.\n"
)
PROSE_STARTS = [
    "CHAPTER I.", "Mr. Sherlock Holmes", "\"Well, Watson,", "I\nsaid that Dr. J. H. Mortimer", "The stick cost",
    "\"Excellent!\" cried he.", "It weighed", "1. Introduction", "2. The curse", "The U.S. edition", "Then came",
]

GLOSSARY_TERMS = [
    ("apt", "The Advanced Package Tool resolves dependencies, downloads packages from the archive and hands "
            "them to dpkg in the right order."),
    ("dpkg", "The low-level tool that unpacks, configures and removes the binary package files of a Debian "
             "system and keeps its database."),
    ("debconf", "A configuration system that asks the questions a package needs answered before it is "
                "installed, and stores the answers."),
    ("apt-cache", "A command that searches the package lists and prints what a package depends on and "
                  "which versions the archive offers."),
    ("sources.list", "The file that names the archives apt downloads package lists and packages from, one "
                     "line per archive and suite."),
    ("dselect", "An older menu-driven front end to dpkg that lets an administrator choose packages to "
                "install or remove."),
]
GLOSSARY = "Glossary\n\n" + "".join(f"{term}\n\n    {definition}\n\n" for term, definition in GLOSSARY_TERMS)


def segments_of(text: str, chunks: list[int], max_segment_bytes: int = 1024,
                restore_at: int | None = None) -> list[tuple[str, int, int]]:
    """(text, start_byte, end_byte) of each segment closed when `text` is streamed cut at `chunks` (byte
    offsets), then closed; restore_at: rebuild the assembler and tracker from a snapshot after that chunk,
    as a durable record does (the assembler's open segment start comes from the tracker)."""
    raw = text.encode()
    bounds = [0, *sorted(chunks), len(raw)]
    a = TextAssembler(max_tail_bytes=1 << 20, max_segment_bytes=max_segment_bytes)
    t = SegmentTracker(4, max_kept=1000, max_text_bytes=4096)
    closed = []

    def book(pieces):
        for p in pieces:
            closed.extend(t.add(p, np.zeros(4), max(1, len(p.text)), True, True))

    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        book(a.feed(raw[lo:hi]))
        if i == restore_at:
            snap = a.snapshot()
            meta, tensors = t.to_record()
            t = SegmentTracker.from_record(meta, tensors, max_kept=1000, max_text_bytes=4096)
            assert snap.segment_start == t.open_start  # what a record restores the assembler with
            a = TextAssembler(max_tail_bytes=1 << 20, max_segment_bytes=max_segment_bytes,
                              snapshot=TextSnapshot(snap.tail, snap.offset, t.open_start))
    book(a.close())  # close hands out the rest, which ends the last segment
    return [(c.text, c.start_byte, c.end_byte) for c in closed]


def test_kjv_verses_and_sentences():
    got = segments_of(KJV, [])
    assert [s for s, _, _ in got] == KJV_SENTENCES
    raw = KJV.encode()
    for text, start, end in got:  # the bytes a segment names are its text
        assert raw[start:end].decode() == text


def test_prose_with_abbreviations_quotes_numbers_and_lists():
    got = [s for s, _, _ in segments_of(PROSE, [])]
    assert len(got) == len(PROSE_STARTS), got
    for seg, start in zip(got, PROSE_STARTS):
        assert seg.startswith(start), (seg, start)


@pytest.mark.parametrize("sample", [KJV, PROSE, GLOSSARY])
def test_no_segment_starts_mid_sentence(sample):
    """Each segment starts with a capital, a digit or an opening quote (the texts have no sentence that
    starts otherwise), and ends with a mark or at a line end."""
    for text, _, _ in segments_of(sample, []):
        first = text.lstrip("\"'(")[:1]
        assert first.isupper() or first.isdigit() or text.split()[0] in dict(GLOSSARY_TERMS), text


def test_sentence_rules():
    def ends(marked):  # "|" marks the candidate
        return decide(marked.replace("|", ""), marked.index("|"), final=True)

    assert ends("It ended.| Then it began.")
    assert not ends("See Mr.| Smith now.")
    assert not ends("Ask J.| R. R. Tolkien.")
    assert not ends("Read e.g.| The Hobbit.")
    assert not ends("As in Fig.| 3 above.")
    assert not ends("Gen.| 1:1 says.")
    assert ends("Born in 1902.| 1903 came.")
    assert not ends("Who?| for the sea.")
    assert ends('"Stop!"| He ran.')
    assert not ends('"Stop!"| he cried.')
    assert ends("a heading|\n\nThe text.")
    assert not ends("a wrapped|\nline goes on.")
    assert ends("the earth|\n1:2 And the earth.")
    assert ends("items:|\n- one\n- two")
    assert not ends("\n1.| Introduction")
    assert decide("It ended. The", len("It ended."), final=False) is None  # "The" may go on
    assert decide("It ended. ", len("It ended."), final=False) is None  # the whitespace may hold a newline


# words built to meet each rule and its edges: openers, abbreviations, initials, numbers, list items, runs of
# marks and closers (one run longer than the word window), whitespace that the word search does not split at
_WORDS = st.tuples(
    st.sampled_from(["", "", "(", "“", "¿"]),
    st.sampled_from(["", "a", "Z", "word", "the", "Mr", "e.g", "U.S", "No", "fig", "cf", "5", "12", "1:2", "-",
                     "a)", "é", "日本", "Q" * 15, "Q" * 16, "x" * 70]),
    st.sampled_from(["", "", ".", ".", "!", "?.", "..", "…", "。"]),
    st.sampled_from(["", "", '"', ")", "»", ")" * 70]),
    st.sampled_from(["", " ", " ", "  ", "\n", "\n\n", "\t", "\r\n", " \n ", "\xa0", "\x0b", "\xa0\n\n", "\u3000\n"]),
).map("".join)


@settings(max_examples=400, deadline=None)
@given(words=st.lists(_WORDS, max_size=30), data=st.data())
def test_ends_decides_every_candidate_as_decide_does(words, data):
    """`ends` (one pass, the rules inlined for marks) against `decide` on each candidate, for every place
    the emitted text can end and both values of final."""
    text = "".join(words)
    # the emitted text ends anywhere, often at a candidate (the window after it may then be cut short)
    n = data.draw(st.integers(0, len(text)) | st.sampled_from([0, *candidates(text, 0, len(text))]))
    final = data.draw(st.booleans())
    at0 = data.draw(st.booleans())
    want = [s for s in candidates(text, 0, n) if decide(text, s, final or s < n, at0)]
    assert ends(text, n, final, at0) == want
    # and every place decide can be asked about (right after a non-space, before whitespace that does not run to the
    # text's end: there the end of text decides, which is the caller's) is a candidate: none is left out of `ends`
    every = [s for s in range(1, min(n, len(text) - 1) + 1)
             if not text[s - 1].isspace() and text[s].isspace() and not text[s:].isspace()]
    assert not [s for s in every if s not in want and decide(text, s, final or s < n, at0)]


def test_a_blank_line_after_a_list_marker_on_its_own_line_ends_a_sentence():
    """The newline before "(a)" is a candidate (a list item follows); the blank line after "(a)" is one too, which
    a search that took the item with the first newline skipped."""
    for text in ("Steps\n(a)\n\nThe text.", "Steps\na)\n\nThe text.", "Steps\n-\n\nThe text."):
        s = text.index("\n\n")
        assert decide(text, s, final=True) and s in candidates(text, 0, len(text)), text
        assert s in ends(text, len(text), final=True), text


def test_whitespace_of_any_kind_before_a_blank_line_or_a_list_item_is_a_candidate():
    """A word, then a space that is not " " or a tab ("\xa0", "\u3000", "\x1c"), then a blank line or a list item:
    `decide` ends a sentence there, so `candidates` and `ends` must find it (they stepped back from the newline over
    ASCII spaces only, and left the two paragraphs one sentence)."""
    for space in ("\xa0", "\u3000", "\x1c", " \xa0\t"):
        for after in ("\n\nThe text.", "\n- one\n- two"):
            text = "a heading" + space + after
            s = len("a heading")
            assert decide(text, s, final=True), repr(text)
            assert s in candidates(text, 0, len(text)) and s in ends(text, len(text), final=True), repr(text)


def test_ends_waits_for_the_window_after_a_candidate():
    assert ends("It ended. " + "Q" * 15, 9, final=False) == []  # the next word may go on
    assert ends("It ended. " + "Q" * 16, 9, final=False) == [9]  # its window is all here
    assert ends("It ended. " + "Q" * 15, 9, final=True) == [9]
    assert ends("It ended. ", 9, final=False) == []  # the whitespace may hold a newline


LONG = ("word " * 900).strip() + ". " + ("Étude " * 400).strip() + ". Short one. " + "x" * 1500 + " end."


def test_segments_are_bounded_in_bytes():
    """A sentence longer than max_segment_bytes is cut at a space within the bound; only a run without
    a space longer than the bound makes a longer segment (it cannot be cut without changing tokens)."""
    got = segments_of(LONG, [], max_segment_bytes=256)
    raw = LONG.encode()
    assert "".join(raw[s:e].decode() + " " for _, s, e in got).split() == LONG.split()  # nothing lost
    for text, start, end in got:
        if "x" * 300 not in text:
            assert end - start <= 256, (text, end - start)
    assert any(e - s > 256 for _, s, e in got)  # the 1500-byte run
    assert max(e - s for t, s, e in segments_of(KJV * 20, [], max_segment_bytes=128)) <= 128


@pytest.mark.parametrize("sample", [KJV, PROSE, GLOSSARY, LONG, KJV.replace("\r\n", "\n") + "ü " * 300])
@given(st.data())
@settings(max_examples=40, deadline=None)
def test_segments_do_not_depend_on_the_chunking_or_a_restore(sample, data):
    raw = sample.encode()
    whole = segments_of(sample, [], max_segment_bytes=200)
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=12))
    restore = data.draw(st.one_of(st.none(), st.integers(0, len(cuts))))
    assert segments_of(sample, cuts, max_segment_bytes=200, restore_at=restore) == whole


def test_many_small_chunks_of_a_long_text_are_invariant():
    text = (KJV + PROSE + GLOSSARY) * 3
    raw = text.encode()
    rng = random.Random(5)
    cuts = sorted(rng.sample(range(len(raw)), 400))
    assert segments_of(text, cuts, max_segment_bytes=300) == segments_of(text, [], max_segment_bytes=300)


def test_a_summary_prefers_sentences_to_headwords():
    """Headwords are as salient as definitions (here: more), but a summary of a glossary is made of its
    definitions; when nothing but short segments exists, they are still picked."""
    rng = np.random.default_rng(0)
    segs = []
    for i, (term, definition) in enumerate(GLOSSARY_TERMS):
        e = rng.standard_normal(8).astype(np.float32)
        e /= np.linalg.norm(e)
        segs.append(Segment(term, 2 * i, 2 * i + 1, 0.9, e))
        segs.append(Segment(definition, 2 * i + 1, 2 * i + 2, 0.7, -e))
    picked = select_summary(segs, 3)
    assert [s.text for s in picked if s.text in dict(GLOSSARY_TERMS)] == []
    assert len(picked) == 3
    assert len(select_summary([s for s in segs if s.text in dict(GLOSSARY_TERMS)], 2)) == 2


def test_the_engine_segments_a_text_into_its_sentences_whatever_the_chunks():
    """End to end with the bundled model (its WordPiece tokenizer): the engine's segments are the verses'
    sentences, the same for two chunkings; its summary picks from them."""
    got = []
    with Engine.from_model("default", config=EngineConfig(max_kept_segments=64)) as e:
        data = KJV.encode()
        for name, size in (("a", len(data)), ("b", 37)):
            for seq, i in enumerate(range(0, len(data), size), start=1):
                e.append(name, seq, data[i : i + size])
            e.flush(name)
            got.append([(s.text, s.start_byte, s.end_byte) for s in e.segments(name)])
        summary = e.summarize("b", k=3)
    assert got[0] == got[1]
    assert [t for t, _, _ in got[0]] == KJV_SENTENCES
    assert {s.text for s in summary.segments} <= set(KJV_SENTENCES)
