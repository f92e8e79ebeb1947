"""What streamret takes as a text from a user: non-empty UTF-8 without NUL bytes.

`streamret stream FILE`, `streamret demo` and `Client.stream` refuse an empty text (it has no
embedding: an L2-normalised vector of nothing does not exist), bytes that are not UTF-8 and NUL bytes
(a binary file, or UTF-16 text, read as text would be embedded as noise), naming the input and the
byte offset; `streamret embed` and the Batch RPCs write the same refusal in the row's `error` column.
The Append RPC itself is more lenient, because a long-lived stream must not break on one bad byte:
there every byte that is not valid UTF-8 becomes U+FFFD (streamret/engine/text.py), and a stream with
no tokens yet answers a zero vector.
"""

from __future__ import annotations

import codecs
from pathlib import Path

_CONVERT = "streamret reads UTF-8 text only (convert other encodings first, e.g. `iconv -f latin1 -t utf-8`)"


class InvalidText(ValueError):
    """A text that is empty or not UTF-8; the message names the input and, for bad bytes, the offset."""


class Utf8Check:
    """Checks a text fed in pieces cut anywhere (inside a character too), keeping count of the bytes."""

    def __init__(self, name: str):
        self.name = name
        self.offset = 0  # bytes fed so far
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")

    def feed(self, data: bytes, final: bool = False) -> None:
        """Raise InvalidText at the first byte that is not UTF-8; final: the text ends after data."""
        pending = len(self._decoder.getstate()[0])  # bytes of an unfinished character from the last piece
        nul = data.find(b"\x00")
        try:
            self._decoder.decode(data if nul < 0 else data[:nul], final and nul < 0)
        except UnicodeDecodeError as e:  # before any NUL byte
            at = self.offset - pending + e.start
            bad = e.object[e.start]
            what = "an unfinished character at the end" if e.reason == "unexpected end of data" else e.reason
            raise InvalidText(f"{self.name} is not UTF-8 text: byte 0x{bad:02x} at offset {at} ({what}); "
                              f"{_CONVERT}") from None
        if nul >= 0:
            raise InvalidText(f"{self.name} is not text: a NUL byte at offset {self.offset + nul} (binary data, or "
                              f"UTF-16 text); {_CONVERT}")
        self.offset += len(data)

    def finish(self, allow_empty: bool = False) -> None:
        """The text ended: raise InvalidText for an unfinished last character, or for no bytes at all."""
        self.feed(b"", final=True)
        if self.offset == 0 and not allow_empty:
            raise InvalidText(f"{self.name} is empty: nothing to embed")


def check_bytes(data: bytes, name: str) -> str:
    """The text of data, or InvalidText naming `name`. A good text is decoded once (a batch job checks every
    document before it starts: hundreds of MB); only a bad one goes through `Utf8Check` for its message."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if not text or b"\x00" in data:
        check = Utf8Check(name)  # raises: empty, not UTF-8, or a NUL byte, whichever comes first, with its offset
        check.feed(data)
        check.finish()
    return text


def check_file(path: str | Path, block_bytes: int = 1 << 20) -> int:
    """Read a whole file as UTF-8 text in blocks (memory stays bounded); return its size in bytes, or raise
    InvalidText (empty, or the offset of the first byte that is not UTF-8)."""
    check = Utf8Check(str(path))
    with open(path, "rb") as f:
        while block := f.read(block_bytes):
            check.feed(block)
    check.finish()
    return check.offset
