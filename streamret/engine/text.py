"""Text boundaries: turn a stream's bytes, cut anywhere, into text pieces that are safe to tokenize.

A chunk may end inside a UTF-8 character or inside a word. `TextAssembler` keeps the undecoded
tail and hands out text only up to a safe cut: right before a space " " that follows a
non-whitespace character, where every tokenizer the engine accepts is concatenative (see
`streamret.model.tokenizer.Tokenizer`), so tokenizing the pieces one by one gives the same ids as
tokenizing the whole stream at once. Never inside a run of whitespace (BPE merges "\n\n" and
"  "), and never before a newline or tab that follows a word (Metaspace tokenizers keep
"word\nnext" as one pre-token).

Policies (documented for clients):
- Invalid UTF-8: every byte that is not part of a valid UTF-8 sequence becomes U+FFFD. The
  replacement is per byte, so it does not depend on where chunks were cut.
- Bounded tail: when the kept tail would exceed `max_tail_bytes` (a word longer than that, or a
  stream without whitespace), all complete characters are handed out anyway and only an
  incomplete character (at most 3 bytes) is kept. Such a cut falls between code points, where the
  byte tokenizer is still exact; a subword tokenizer may then tokenize that spot differently
  than a one-shot pass would.
- `flush` hands out every complete character (the cut is then wherever the client flushed) and
  keeps only an incomplete character, which later bytes may still complete; `close` also turns
  that remainder into U+FFFD.
- Segments (sentence mode): `sentences.decide` says where sentences end, from a window around each
  candidate that does not depend on the chunking (text is held back, a word at most, until that
  window has arrived). A segment is cut at the first safe cut at or after a sentence end, so that
  segmentation never changes tokenization: in "earth.\n\n1:2 And" the cut falls before " And", the
  tokens of "1:2" are pooled with the sentence before, and its text ("carry") starts the next
  segment's text. No segment runs past `max_segment_bytes` from its first non-space character to its
  cut: a longer sentence is cut at the last safe cut within the bound (or, in a run of that many
  bytes without a space, at the first one after it). Every cut depends only on the text and on where
  the open segment starts, which the snapshot keeps (`segment_start`), so segments do not depend on
  the chunking either; a flush ends the open segment wherever it falls.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import chain, repeat
from operator import attrgetter, getitem

import numpy as np

from . import sentences

SEGMENT_MODES = ("sentence", "chunk")  # a segment per sentence, or per appended chunk
_ESCAPED = re.compile("[\udc80-\udcff]")  # bytes that failed to decode, as surrogateescape writes them
# searched in the reversed text: the last space that follows a non-whitespace character; each
# position is tried with a two-character test, so it is linear whatever the words' and runs' lengths
_LAST_CUT_REVERSED = re.compile(r" (?=\S)")
_SAFE_CUT = re.compile(r" (?<=\S )")  # (a pattern that starts with a literal is searched for at C speed)
_NON_SPACE = re.compile(r"\S")


@dataclass(frozen=True)
class TextPiece:
    """Text handed to the tokenizer, with its place in the stream's bytes [start_byte, end_byte)."""

    text: str
    start_byte: int
    end_byte: int
    starts_segment: bool = False  # the open segment ends before this piece
    ends_segment: bool = False  # the open segment ends after this piece
    # with ends_segment: the last carry_chars characters (carry_bytes stream bytes) of text come after the
    # sentence end, so they are the start of the next segment's text (their tokens stay with this one)
    carry_chars: int = 0
    carry_bytes: int = 0

    @cached_property
    def stripped(self) -> str:
        """The text without its leading whitespace (where a segment that starts with this piece starts)."""
        return self.text.lstrip()

    @cached_property
    def lead_bytes(self) -> int:
        """UTF-8 bytes of the leading whitespace: the segment starts at start_byte + lead_bytes."""
        return len(self.text[: len(self.text) - len(self.stripped)].encode("utf-8"))


_new_object = object.__new__


def _piece(text: str, start_byte: int, end_byte: int, starts_segment: bool, ends_segment: bool = False,
           carry_chars: int = 0, carry_bytes: int = 0) -> TextPiece:
    """TextPiece(...) for the text front's loop: the same frozen object, made without the dataclass's
    object.__setattr__ per field (half the cost of a piece, and a chunk makes one per sentence)."""
    piece = _new_object(TextPiece)
    piece.__dict__.update(text=text, start_byte=start_byte, end_byte=end_byte, starts_segment=starts_segment,
                          ends_segment=ends_segment, carry_chars=carry_chars, carry_bytes=carry_bytes)
    return piece


@dataclass(frozen=True)
class TextSnapshot:
    """What a saved state needs to continue the text: the undelivered bytes and where they start."""

    tail: bytes
    offset: int  # stream byte offset of tail[0]
    # sentence mode: stream byte offset of the open segment's first non-space character (None: not yet).
    # A durable record does not hold it: it is the segment tracker's open start (record.py)
    segment_start: int | None = None


# columns of `piece_facts`: what booking a piece's text reads of it, as numbers (-1: none)
BODY_END_BYTE, BODY_FIRST_BYTE, SEED_FIRST_BYTE, END_BYTE, TEXT_LEN, BODY_LEN, BODY_LEAD, SEED_LEAD = range(8)


_PIECE_TEXT = attrgetter("text")
# a `TextPiece`'s numbers, which `piece_facts` and `StepSpans.of_items` read: the columns of the int64 [pieces, 6]
# array of `piece_columns` (its "numbers"), in the order of TextPiece's fields after its text
_PIECE_NUMBERS = attrgetter("start_byte", "end_byte", "starts_segment", "ends_segment", "carry_chars", "carry_bytes")


def piece_facts(pieces: Sequence) -> np.ndarray:
    """int64 [pieces, 8], per `TextPiece`: where its body (the text before the carry) ends in stream bytes,
    the byte of its body's first non-space character, that of its carry's (the start of the next segment
    when the piece ends one), its end byte, its length in characters, its body's, and the character
    offsets (in its text) of its body's and its carry's first non-space characters. Worked out when a
    chunk is tokenized (`PieceLayout`), so that a step books text with array operations."""
    return piece_columns(pieces)[2]


def facts_of(texts: list[str], numbers: np.ndarray, ascii: bool) -> np.ndarray:
    """`piece_facts` from the pieces' texts and numbers (`_PIECE_NUMBERS`; ascii: every text is ASCII), with no
    Python loop over the pieces (the string work is maps of str methods): this runs for every piece of every chunk."""
    k = len(texts)
    start, end, ends_segment, carry_chars, carry_bytes = (numbers[:, c] for c in (0, 1, 3, 4, 5))
    ends_segment = ends_segment.astype(bool)
    n = np.fromiter(map(len, texts), np.int64, k)
    lead = n - np.fromiter(map(len, map(str.lstrip, texts)), np.int64, k)  # leading whitespace
    body = np.where(ends_segment, n - carry_chars, n)
    carries = list(map(getitem, texts, map(slice, body.tolist(), repeat(None))))  # "" unless ends_segment
    carry_lead = (n - body) - np.fromiter(map(len, map(str.lstrip, carries)), np.int64, k)
    if ascii:  # one byte per character
        lead_bytes, carry_lead_bytes = lead, carry_lead
    else:
        lead_bytes, carry_lead_bytes = (
            np.fromiter(map(len, map(str.encode, map(getitem, strings, map(slice, chars.tolist())))), np.int64, k)
            for strings, chars in ((texts, lead), (carries, carry_lead)))
    has_body = lead < body  # the body has a non-space character iff its leading whitespace ends before it
    has_seed = ends_segment & (carry_lead < n - body)
    none = np.int64(-1)
    return np.stack([
        end - np.where(ends_segment, carry_bytes, 0),  # BODY_END_BYTE
        np.where(has_body, start + lead_bytes, none),  # BODY_FIRST_BYTE
        np.where(has_seed, end - carry_bytes + carry_lead_bytes, none),  # SEED_FIRST_BYTE
        end, n, body,  # END_BYTE, TEXT_LEN, BODY_LEN
        np.where(has_body, lead, none),  # BODY_LEAD
        np.where(has_seed, body + carry_lead, none),  # SEED_LEAD
    ], axis=1)


def piece_columns(pieces: Sequence[TextPiece]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The pieces' texts, numbers (int64 [pieces, 6], `_PIECE_NUMBERS`) and `piece_facts`: all a step reads of them,
    as a tokenizer process sends them (the engine makes TextPiece objects of them only where a step needs a piece's
    own object)."""
    texts = list(map(_PIECE_TEXT, pieces))
    return columns_of_rows(texts, list(chain.from_iterable(map(_PIECE_NUMBERS, pieces))))


# Pieces as rows: their texts, and their numbers (`_PIECE_NUMBERS`) six a piece in one flat list (what the text
# front makes)
Rows = tuple[list[str], list[int]]


def columns_of_rows(texts: list[str], numbers: list[int]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """`piece_columns` of the pieces whose rows these are."""
    numbers = np.fromiter(numbers, np.int64, len(numbers)).reshape(-1, 6)
    return texts, numbers, facts_of(texts, numbers, all(map(str.isascii, texts)))


def pieces_of_rows(texts: list[str], numbers: list[int]) -> list[TextPiece]:
    """The pieces whose rows these are."""
    n = iter(numbers)
    return [_piece(t, a, b, bool(s), bool(e), cc, cb) for t, a, b, s, e, cc, cb in zip(texts, n, n, n, n, n, n)]


def pieces_of_columns(texts: list[str], numbers: np.ndarray) -> list[TextPiece]:
    """The pieces whose texts and numbers (`piece_columns`) these are."""
    return pieces_of_rows(texts, numbers.ravel().tolist())


def _last_safe_cut(text: str) -> int:
    """The last position in text right before a space that follows non-whitespace; 0 when there is none."""
    q = text.rfind(" ")
    if q > 0 and not text[q - 1].isspace():
        return q  # most texts: the last space follows a word
    m = _LAST_CUT_REVERSED.search(text[::-1])
    return len(text) - 1 - m.start() if m else 0


def _nbytes(raw: str) -> int:
    return len(raw.encode("utf-8", "surrogateescape"))


def _clean(raw: str) -> str:
    return _ESCAPED.sub("\ufffd", raw)


class _ByteOffsets:
    """Stream byte offset of each character position of a surrogate-escaped text (one byte per escape):
    `at(i)`, a C-level call for ASCII text, where it is offset + i."""

    def __init__(self, text: str, offset: int):
        self.offset = offset
        self.cum = None
        self.at = offset.__add__
        if not text.isascii():
            cp = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
            size = 1 + (cp >= 0x80) + (cp >= 0x800) + (cp >= 0x10000) - 2 * ((cp >= 0xDC80) & (cp <= 0xDCFF))
            self.cum = np.concatenate([[0], np.cumsum(size, dtype=np.int64)])
            self.at = self._at_cum

    def _at_cum(self, i: int) -> int:
        return self.offset + int(self.cum[i])


class TextAssembler:
    """One stream's text front: bytes in, tokenizer-safe `TextPiece`s out, bounded undecoded tail."""

    def __init__(self, max_tail_bytes: int = 4096, segment_by: str = "sentence", snapshot: TextSnapshot | None = None,
                 max_segment_bytes: int = 1024):
        if max_tail_bytes < 4:
            raise ValueError(f"max_tail_bytes must be >= 4 (one UTF-8 character), got {max_tail_bytes}")
        if segment_by not in SEGMENT_MODES:
            raise ValueError(f"segment_by={segment_by!r}; use one of {SEGMENT_MODES}")
        if max_segment_bytes < 1:
            raise ValueError(f"max_segment_bytes must be >= 1, got {max_segment_bytes}")
        self.max_tail_bytes = max_tail_bytes
        self.segment_by = segment_by
        self.max_segment_bytes = max_segment_bytes
        self._decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        snapshot = snapshot or TextSnapshot(b"", 0)
        self._offset = snapshot.offset
        self._segment_start = snapshot.segment_start
        self._text = self._decoder.decode(snapshot.tail)  # decoded, not yet handed out (surrogate-escaped)

    def snapshot(self) -> TextSnapshot:
        pending, _ = self._decoder.getstate()
        return TextSnapshot(self._text.encode("utf-8", "surrogateescape") + pending, self._offset,
                            self._segment_start)

    @property
    def tail_bytes(self) -> int:
        return _nbytes(self._text) + len(self._decoder.getstate()[0])

    def feed(self, data: bytes, flush: bool = False) -> list[TextPiece]:
        """Add bytes; return the pieces that became safe to tokenize (all complete text if flush)."""
        return pieces_of_rows(*self.feed_rows(data, flush))

    def close(self) -> list[TextPiece]:
        """End of stream: hand out everything, an incomplete trailing character as U+FFFD."""
        return pieces_of_rows(*self.close_rows())

    def feed_rows(self, data: bytes, flush: bool = False) -> Rows:
        """`feed`'s pieces as `Rows` (what a tokenizer process sends on: no TextPiece object a sentence)."""
        self._text += self._decoder.decode(data)
        if flush:
            return self._emit(len(self._text), boundary="flush")
        cut = _last_safe_cut(self._text)
        if self.segment_by == "sentence" and cut:
            cut = self._decided_cut(cut)
        if _nbytes(self._text[cut:]) + len(self._decoder.getstate()[0]) > self.max_tail_bytes:
            return self._emit(len(self._text), boundary="forced")  # tail bound: every complete character
        return self._emit(cut, boundary="space")

    def close_rows(self) -> Rows:
        """`close`'s pieces as `Rows`."""
        self._text += self._decoder.decode(b"", final=True)
        return self._emit(len(self._text), boundary="flush")

    def _decided_cut(self, cut: int) -> int:
        """cut, or an earlier safe cut when whether a sentence ends at cut needs text not here yet: the word
        before it is then held back too, so that the next emission sees the whole window."""
        text = self._text
        if sentences.decide(text, cut, final=False, line_start_at_0=self._offset == 0) is not None:
            return cut
        if not sentences.marked(text, cut):
            return cut  # only the whitespace after it decides (`line_break`): the next emission does, at its start
        w0 = max(text.rfind(c, 0, cut) for c in " \t\n\r\x0b\x0c") + 1  # the word before cut starts here
        return _last_safe_cut(text[:w0])

    def _emit(self, cut: int, boundary: str) -> Rows:
        """Hand out text[:cut]; boundary says what follows it: "space", "flush" or "forced" (mid-word)."""
        if not cut:
            return [], []
        if self.segment_by == "chunk":
            raw, self._text = self._text[:cut], self._text[cut:]
            nb = _nbytes(raw)
            self._offset += nb
            return [_clean(raw)], [self._offset - nb, self._offset, False, True, 0, 0]
        text = self._text
        offsets = _ByteOffsets(text[:cut], self._offset)
        texts, numbers = self._segment_pieces(cut, boundary == "flush", offsets)
        if offsets.cum is not None and _ESCAPED.search(text, 0, cut) is not None:
            texts = list(map(_clean, texts))
        self._text = text[cut:]
        self._offset = offsets.at(cut)
        return texts, numbers

    def _segment_pieces(self, n: int, final: bool, offsets: _ByteOffsets) -> Rows:
        """text[:n] as pieces, a piece ending at each segment cut; offsets: those of text[:n]. Updates the open
        segment's start.

        The segment cuts, in order, as (p, s): the segment ends at position p (a safe cut; 0 is the start of what
        is handed out now) and its text ends at s <= p: the first safe cut p at or after each sentence end s (one
        scan in all); a cut for length wherever a segment would run past max_segment_bytes from its first
        non-space character (`_cap_cut`); and (p, p) where the text carried after a sentence end holds a line break
        that ends a sentence of its own (that text, with no tokens, is given up). A piece ends at each new p; p
        again (or 0) restarts the segment at that piece's start. One pass over the sentence ends: a chunk makes
        a piece a sentence, so this loop is most of a text front's work."""
        text, cap, at = self._text, self.max_segment_bytes, offsets.at
        texts: list[str] = []
        numbers: list[int] = []
        start, offset, restart = 0, self._offset, -1  # the next piece starts at start (offset in bytes)

        def cut_at(p: int, s: int) -> None:  # a segment cut (p, s) where it is rare: the common one is inline below
            nonlocal start, offset, restart
            if p == start:
                restart = p
                return
            end = at(p)
            texts.append(text[start:p])
            numbers.extend((offset, end, start == restart, True, p - s, end - at(s)))
            start, offset = p, end

        a = self._segment_start  # byte offset of the open segment's first non-space character, or None
        prev = 0  # the open segment's text starts at or after this position
        if self._offset > 0 and text[:1].isspace() and sentences.line_break(text, 0, final=True):
            cut_at(0, 0)  # decided now: it needed the whitespace that came after the last emission
            a = None
        non_space, safe_cut, last = _NON_SPACE.search, _SAFE_CUT.search, -1
        safe = None  # the first safe cut at or after the last sentence end, up to n (-1: none)
        ends = sentences.ends(text, n, final, line_start_at_0=self._offset == 0)
        if final:
            ends.append(n)  # the end of what is handed out ends a segment (a cut (n, n) unless a sentence's is at n)
        ends.append(-1)  # (n, None): the cuts for length of the open segment's text up to n
        for s in ends:
            if s < 0:
                p, s = n, None
            else:
                if safe is None or 0 <= safe < s:
                    if text[s : s + 1] == " ":
                        safe = s  # most sentences end right before a space (and after a word: a safe cut)
                    else:
                        m = safe_cut(text, s, n + 1)
                        safe = m.start() if m is not None else -1
                p = safe if safe >= 0 else (n if final else -1)
                if p < 0 or p == last:
                    continue  # no cut yet, or the cut of an earlier sentence end
            while True:  # cuts for length before p
                if a is None:
                    if s is not None and at(p) - at(prev) <= cap:
                        break  # within the bound wherever its text starts (a is set again below)
                    m = non_space(text, prev, p)
                    if m is None:
                        break
                    a = at(m.start())
                if at(p) - a <= cap:
                    break
                q = self._cap_cut(text, offsets, a, prev, p)
                if q is None or q >= p:
                    break
                cut_at(q, q)
                prev, a = q, None
            if s is None:
                break
            last = p
            if p == start:
                restart = p
            else:  # cut_at(p, s), inline
                end = at(p)
                texts.append(text[start:p])
                numbers.extend((offset, end, start == restart, True, p - s, end - at(s)))
                start, offset = p, end
            if p == s:
                prev, a = p, None
                continue
            m = non_space(text, s, p)
            prev, a = p, (at(m.start()) if m is not None else None)
            # a lone space before a word (where most carries end) holds no line break
            lone_space = text[p : p + 1] == " " and text[p + 1 : p + 2].strip()
            if not lone_space and sentences.line_break(text, p, final or p < n):
                cut_at(p, p)  # the carried text ends a sentence of its own, with no tokens: given up
                a = None
        if start < n:
            texts.append(text[start:n])
            numbers.extend((offset, at(n), start == restart, False, 0, 0))
        self._segment_start = a
        return texts, numbers

    def _cap_cut(self, text: str, offsets: _ByteOffsets, a: int, lo: int, hi: int) -> int | None:
        """Where a segment whose text starts at byte a, and whose tokens start at position lo, is cut for
        length: the last safe cut in [lo, hi] after a and at most max_segment_bytes after it, else the first
        one after a; None when there is none. lo itself counts when the text starts before it (a carry):
        cutting there gives up the carry's text."""
        limit = a + self.max_segment_bytes
        first = best = None
        if offsets.at(lo) > a and (lo > 0 or (text.startswith(" ") and self._offset > 0)):
            first = lo
            if offsets.at(lo) <= limit:
                best = lo
        for m in _SAFE_CUT.finditer(text, lo + 1, hi + 1):
            q = m.start()
            if offsets.at(q) > limit:
                if first is None:
                    first = q
                break
            if first is None:
                first = q
            best = q
        return best if best is not None else first
