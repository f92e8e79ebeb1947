"""The benches' one rule for a --text file: a name ending in .gz is read as gzip, any other as it is (read raw,
a compressed file's bytes would reach the engine as chunks of binary: bench/RESULTS.md, session 49)."""

from __future__ import annotations

import gzip
import os


def read_text_file(path: str | os.PathLike, limit: int | None = None) -> bytes:
    """The file's bytes, decompressed when its name ends in .gz; at most `limit` of them (None: all)."""
    opener = gzip.open if os.fspath(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        return f.read() if limit is None else f.read(limit)
