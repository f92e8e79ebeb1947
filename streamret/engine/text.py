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
- Segments (sentence mode): a segment ends right before a space that follows . ! ? and their
  CJK forms (closing quotes and brackets may follow the mark), and a run of whitespace that
  starts with a space and holds a newline starts a new segment ("end.\nNext" is no cut: it is
  not a safe one). Every segment cut is also a safe cut, so segmentation never changes
  tokenization, and it depends only on the text, not on the chunking.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from functools import cached_property

SEGMENT_MODES = ("sentence", "chunk")  # a segment per sentence, or per appended chunk
SENTENCE_END = frozenset(".!?。！？…")
CLOSERS = frozenset("\"')]}»”’」』）")
_ESCAPED = re.compile("[\udc80-\udcff]")  # bytes that failed to decode, as surrogateescape writes them
# searched in the reversed text: the last space that follows a non-whitespace character; each
# position is tried with a two-character test, so it is linear whatever the words' and runs' lengths
_LAST_CUT_REVERSED = re.compile(r" (?=\S)")
_SEGMENT_CUT = re.compile(
    "[" + re.escape("".join(SENTENCE_END)) + "][" + re.escape("".join(CLOSERS)) + r"]*(?= )|(?<=\S)(?= [^\S\n]*\n)",
    re.S,
)


@dataclass(frozen=True)
class TextPiece:
    """Text handed to the tokenizer, with its place in the stream's bytes [start_byte, end_byte)."""

    text: str
    start_byte: int
    end_byte: int
    starts_segment: bool = False  # the open segment ends before this piece
    ends_segment: bool = False  # the open segment ends after this piece

    @cached_property
    def stripped(self) -> str:
        """The text without its leading whitespace (where a segment that starts with this piece starts)."""
        return self.text.lstrip()

    @cached_property
    def lead_bytes(self) -> int:
        """UTF-8 bytes of the leading whitespace: the segment starts at start_byte + lead_bytes."""
        return len(self.text[: len(self.text) - len(self.stripped)].encode("utf-8"))


@dataclass(frozen=True)
class TextSnapshot:
    """What a saved state needs to continue the text: the undelivered bytes and where they start."""

    tail: bytes
    offset: int  # stream byte offset of tail[0]


def _nbytes(raw: str) -> int:
    return len(raw.encode("utf-8", "surrogateescape"))


def _clean(raw: str) -> str:
    return _ESCAPED.sub("\ufffd", raw)


def _ends_sentence(raw: str) -> bool:
    stripped = raw.rstrip("".join(CLOSERS))
    return bool(stripped) and stripped[-1] in SENTENCE_END


class TextAssembler:
    """One stream's text front: bytes in, tokenizer-safe `TextPiece`s out, bounded undecoded tail."""

    def __init__(self, max_tail_bytes: int = 4096, segment_by: str = "sentence", snapshot: TextSnapshot | None = None):
        if max_tail_bytes < 4:
            raise ValueError(f"max_tail_bytes must be >= 4 (one UTF-8 character), got {max_tail_bytes}")
        if segment_by not in SEGMENT_MODES:
            raise ValueError(f"segment_by={segment_by!r}; use one of {SEGMENT_MODES}")
        self.max_tail_bytes = max_tail_bytes
        self.segment_by = segment_by
        self._decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        snapshot = snapshot or TextSnapshot(b"", 0)
        self._offset = snapshot.offset
        self._text = self._decoder.decode(snapshot.tail)  # decoded, not yet handed out (surrogate-escaped)

    def snapshot(self) -> TextSnapshot:
        pending, _ = self._decoder.getstate()
        return TextSnapshot(self._text.encode("utf-8", "surrogateescape") + pending, self._offset)

    @property
    def tail_bytes(self) -> int:
        return _nbytes(self._text) + len(self._decoder.getstate()[0])

    def feed(self, data: bytes, flush: bool = False) -> list[TextPiece]:
        """Add bytes; return the pieces that became safe to tokenize (all complete text if flush)."""
        self._text += self._decoder.decode(data)
        if flush:
            return self._emit(len(self._text), boundary="flush")
        cut = self._last_safe_cut()
        if self.tail_bytes - _nbytes(self._text[:cut]) > self.max_tail_bytes:
            return self._emit(len(self._text), boundary="forced")  # tail bound: every complete character
        return self._emit(cut, boundary="space")

    def close(self) -> list[TextPiece]:
        """End of stream: hand out everything, an incomplete trailing character as U+FFFD."""
        self._text += self._decoder.decode(b"", final=True)
        return self._emit(len(self._text), boundary="flush")

    def _last_safe_cut(self) -> int:
        """The last position right before a space that follows non-whitespace; 0 when there is none."""
        m = _LAST_CUT_REVERSED.search(self._text[::-1])
        return len(self._text) - 1 - m.start() if m else 0

    def _emit(self, cut: int, boundary: str) -> list[TextPiece]:
        """Hand out text[:cut]; boundary says what follows it: "space", "flush" or "forced" (mid-word)."""
        raw, self._text = self._text[:cut], self._text[cut:]
        if not raw:
            return []
        by_sentence = self.segment_by == "sentence"
        bounds = [*self._segment_cuts(raw), len(raw)] if by_sentence else [len(raw)]
        pieces = []
        start, offset = 0, self._offset
        for end in bounds:
            part = raw[start:end]
            nb = _nbytes(part)
            last = end == len(raw)
            if by_sentence:
                ends = (_ends_sentence(part) and (not last or boundary != "forced")) or (last and boundary == "flush")
            else:
                ends = last  # chunk mode: whatever one append hands out is one segment
            starts = by_sentence and "\n" in part[: len(part) - len(part.lstrip())]
            pieces.append(TextPiece(_clean(part), offset, offset + nb, starts, ends))
            start, offset = end, offset + nb
        self._offset = offset
        return pieces

    @staticmethod
    def _segment_cuts(raw: str) -> list[int]:
        """Safe cuts i (0 < i < len) where a sentence ends or a line starts (before the whole run of
        whitespace holding the newline)."""
        return sorted({m.end() for m in _SEGMENT_CUT.finditer(raw)} - {len(raw)})
