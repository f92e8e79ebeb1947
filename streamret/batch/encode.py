"""`encode(texts) -> np.ndarray`: one whole-document embedding per text, as sentence-transformers users call it.

It is the batch path (arrow_table.embed_table) with a list of strings in and a float32 matrix out: every
text becomes a temporary stream, `batch_size` of them are in the engine at once (so the scheduler packs
them into large steps), and every temporary stream is closed when its text is done, also on an error or
an interrupt. A text gets exactly the stream embedding it would get streamed in one chunk. The
in-process `Engine.encode` and the gRPC client's `encode` (streamret/client.py) share the checks here.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from .. import errors
from ..errors import InvalidArgument, StreamRetError
from .arrow_table import DEFAULT_CHUNK_BYTES, embed_table

if TYPE_CHECKING:
    from tqdm import tqdm

    from ..engine.api import EngineAPI

DEFAULT_BATCH_SIZE = 256  # texts in the engine at once (the service's own batch_in_flight)


def check_texts(texts: str | Iterable[str]) -> tuple[list[bytes], bool]:
    """The texts as UTF-8 bytes, and whether a single str was passed (encode then returns one vector).

    Raises InvalidArgument naming the first item that is not a str or not encodable as UTF-8.
    """
    if isinstance(texts, str):
        return [_utf8(texts, None)], True
    if isinstance(texts, (bytes, bytearray, memoryview)):
        raise InvalidArgument(f"texts must be a str or a list of str, got {type(texts).__name__}; "
                              "decode the bytes first (e.g. data.decode('utf-8'))")
    try:
        items = list(texts)
    except TypeError:
        raise InvalidArgument(f"texts must be a str or a list of str, got {type(texts).__name__}") from None
    return [_utf8(t, i) for i, t in enumerate(items)], False


def _utf8(text: object, index: int | None) -> bytes:
    where = "the text" if index is None else f"texts[{index}]"
    if not isinstance(text, str):
        fix = "decode it first (e.g. .decode('utf-8'))" if isinstance(text, (bytes, bytearray)) else "pass str only"
        raise InvalidArgument(f"{where} is a {type(text).__name__} ({_short(text)}), not a str; {fix}")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidArgument(f"{where} is not valid Unicode (a lone surrogate at character {e.start}); "
                              "remove it or decode the source with errors='replace'") from None


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgument(f"batch_size must be an integer >= 1 (texts in flight at once), got {batch_size!r}")
    return batch_size


def finish(vectors: np.ndarray, single: bool, normalize: bool) -> np.ndarray:
    """float32 [n, dim] (or [dim] for a single text), rows scaled to unit length when `normalize`.

    The model's pooling already L2-normalises every embedding, so normalize=True only removes rounding;
    a zero vector (an empty text has no tokens to pool) stays zero.
    """
    out = np.ascontiguousarray(vectors, dtype=np.float32)
    if normalize and out.size:
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out = np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)
    return out[0] if single else out


def raise_row_error(index: int, error: str) -> None:
    """Raise the streamret error a row of embed_table reported ('CODE: message'), naming texts[index]."""
    code, _, message = error.partition(": ")
    kinds = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, StreamRetError)]
    kind = next((c for c in kinds if c.__dict__.get("code") == code), StreamRetError)
    if not message:
        code, message = "", error
    raise kind(f"texts[{index}] could not be embedded: {message}")


def embedding_dim(table: pa.Table) -> int:
    """The vector size of an embed_table result (readable from its schema even with no rows)."""
    return int(table.schema.field("embedding").type.list_size)


def vectors_of(table: pa.Table, rows: list[int]) -> np.ndarray:
    """float32 [len(rows), dim] of an embed_table result whose row r holds texts[rows[r]]; raises the first
    row error, naming that text's index."""
    for row, err in enumerate(table.column("error").to_pylist()):
        if err is not None:
            raise_row_error(rows[row], err)
    if table.num_rows != len(rows):
        raise StreamRetError(f"the server answered {table.num_rows} rows for {len(rows)} texts")
    flat = table.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return np.asarray(flat, dtype=np.float32).reshape(len(rows), embedding_dim(table))


def progress_bar(total: int, enabled: bool) -> tqdm | None:
    """A tqdm bar over texts when asked; None otherwise (tqdm is then not even imported)."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="text", desc="encode", dynamic_ncols=True)


def encode_with_engine(engine: EngineAPI, texts: str | Iterable[str], *, batch_size: int = DEFAULT_BATCH_SIZE,
                       show_progress_bar: bool = False, normalize: bool = True,
                       chunk_bytes: int | None = None, role: str = "query") -> np.ndarray:
    """Engine.encode (see its docstring), over an Engine or a ClusterEngine (EngineAPI)."""
    data, single = check_texts(texts)
    check_batch_size(batch_size)
    engine.check_role(role)
    out = np.zeros((len(data), engine.embed_dim), dtype=np.float32)
    # an empty text has no tokens: its stream embedding is the zero vector (embed_table calls it a row error)
    rows = [i for i, d in enumerate(data) if d]
    bar = progress_bar(len(data), show_progress_bar)
    try:
        if bar is not None and len(rows) < len(data):
            bar.update(len(data) - len(rows))
        if rows:
            table = pa.table({"id": pa.array(rows, pa.int64()), "text": pa.array([data[i] for i in rows], pa.binary())})
            on_done: Callable[[], None] | None = (lambda: bar.update(1)) if bar is not None else None
            result = embed_table(engine, table, summary_k=0, chunk_bytes=chunk_bytes or DEFAULT_CHUNK_BYTES,
                                 max_in_flight=batch_size, stream_prefix=f"encode-{uuid.uuid4().hex}-",
                                 on_row_done=on_done, role=role)
            out[rows] = vectors_of(result, rows)
    finally:
        if bar is not None:
            bar.close()
    return finish(out, single, normalize)
