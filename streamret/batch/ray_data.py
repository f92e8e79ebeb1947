"""`Embedder`: whole-document embeddings on your own Ray Data dataset, one engine per actor.

    import ray
    from streamret.batch import Embedder

    ds = ray.data.read_parquet("s3://bucket/books/")                  # any dataset, any column names
    ds = ds.map_batches(
        Embedder,
        fn_constructor_kwargs=dict(model="/models/retnet", text_column="body", output_column="vector"),
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=8),   # engines: one per actor
        num_gpus=1,                                                   # per actor; 0 (the default) on CPUs
        batch_size=256,
    )
    ds.write_parquet("s3://bucket/vectors/")                          # every input column, plus `vector`

Each actor loads the model once; each batch's texts go through that engine's batch path (every text a
temporary stream, many in flight at once so the scheduler packs them), so a text of any length gets the
embedding it would get streamed to the server in one chunk, and `Engine.encode` gives the same. The batch comes
back in its own format (pyarrow Table, pandas DataFrame or dict of numpy arrays, whatever `batch_format` says)
with every column kept and `output_column` added: float32 vectors of the model's size (a fixed-size list column
in Arrow, a 2-D array in numpy, NaN where a row has none), and `tokens_column` (tokens read per row) when asked.

A row without a usable text (null, empty, not UTF-8, a NUL byte) fails the batch with an error naming the row,
unless `error_column` is given: then that row gets a null embedding and the reason there, and the dataset goes
on. A failure of the engine itself always fails the batch, so that Ray retries it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import InvalidArgument, StreamRetError
from .arrow_table import DEFAULT_CHUNK_BYTES, DEFAULT_IN_FLIGHT, embed_table
from .parquet_job import build_engine

_ROW = "__streamret_row"


class Embedder:
    """A Ray Data callable class (`ds.map_batches(Embedder, fn_constructor_kwargs=..., compute=...)`; module doc).

    model: a MODEL spec (a checkpoint folder the actors can read, `random:<preset>`, or `default`).
    text_column: the column holding each row's text (string, or UTF-8 binary).
    output_column: the new column of embeddings; it must not exist in the batch yet.
    tokens_column, error_column: optional new columns (tokens read; the reason a row has no embedding).
    device: `auto` picks the GPU Ray gave the actor (num_gpus=1), else the CPU.
    in_flight: texts in the engine at once; batch_tokens: tokens one model step packs (the engine's default
    when None); chunk_bytes: the size texts are fed to the engine in.
    role: the vectors' role, "query" (the plain embedding, the default) or "document" (the model's document map
    applied: whole documents for an index that plain query embeddings search; the model must ship a map, else
    the actor fails at its start with the reason and the fix).
    """

    def __init__(self, model: str = "default", *, text_column: str = "text", output_column: str = "embedding",
                 tokens_column: str | None = None, error_column: str | None = None, device: str = "auto",
                 dtype: str | None = None, in_flight: int = DEFAULT_IN_FLIGHT, batch_tokens: int | None = None,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES, role: str = "query"):
        names = [n for n in (output_column, tokens_column, error_column) if n is not None]
        if len(set(names)) < len(names) or text_column in names:
            raise InvalidArgument(f"text_column={text_column!r}, output_column={output_column!r}, tokens_column="
                                  f"{tokens_column!r} and error_column={error_column!r} must all differ")
        for name, value in (("in_flight", in_flight), ("chunk_bytes", chunk_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgument(f"{name} must be an integer >= 1, got {value!r}")
        self.text_column = text_column
        self.output_column = output_column
        self.tokens_column = tokens_column
        self.error_column = error_column
        self.in_flight = in_flight
        self.chunk_bytes = chunk_bytes
        self.engine = build_engine(model, device, dtype, batch_tokens)
        try:
            self.engine.check_role(role)  # at the actor's start, not at its first batch
        except BaseException:
            self.engine.shutdown(checkpoint=False)
            raise
        self.role = role

    def __call__(self, batch: Any) -> Any:
        texts = self._texts(batch)
        for name in (self.output_column, self.tokens_column, self.error_column):
            if name is not None and name in _columns(batch):
                raise InvalidArgument(f"the batch already has a column {name!r}; pick another name for it "
                                      "(output_column=, tokens_column=, error_column=)")
        table = pa.table({_ROW: pa.array(np.arange(len(texts)), pa.int64()), self.text_column: texts})
        out = embed_table(self.engine, table, id_column=_ROW, text_column=self.text_column, summary_k=0,
                          chunk_bytes=self.chunk_bytes, max_in_flight=self.in_flight, role=self.role)
        errors = out.column("error").to_pylist()
        for row, error in enumerate(errors):
            if error is None:
                continue
            code = error.partition(": ")[0]
            if self.error_column is None or code in ("INTERNAL", "UNAVAILABLE", "RESOURCE_EXHAUSTED"):
                kind = StreamRetError if code in ("INTERNAL", "UNAVAILABLE", "RESOURCE_EXHAUSTED") else InvalidArgument
                fix = "" if kind is StreamRetError else (
                    "; fix or drop the row first, or pass error_column='error' to record the reason and go on")
                raise kind(f"row {row} of the batch, column {self.text_column!r}: {error}{fix}")
        new = {self.output_column: out.column("embedding").combine_chunks()}
        if self.tokens_column is not None:
            new[self.tokens_column] = out.column("tokens").combine_chunks()
        if self.error_column is not None:
            new[self.error_column] = out.column("error").combine_chunks()
        return _with_columns(batch, new)

    def _texts(self, batch: Any) -> pa.Array:
        if self.text_column not in _columns(batch):
            raise InvalidArgument(f"the batch has no column {self.text_column!r}; its columns are "
                                  f"{list(_columns(batch))}: pass text_column= with the one holding the text")
        if isinstance(batch, pa.Table):
            return batch.column(self.text_column).combine_chunks()
        values = batch[self.text_column]
        try:
            return pa.array(values.tolist() if isinstance(values, np.ndarray) else values, from_pandas=True)
        except (pa.ArrowException, TypeError) as e:
            raise InvalidArgument(f"column {self.text_column!r} does not hold text ({e}); it must hold strings") \
                from None


def _columns(batch: Any) -> list[str]:
    if isinstance(batch, pa.Table):
        return batch.column_names
    if isinstance(batch, dict):
        return list(batch)
    if hasattr(batch, "columns"):  # pandas
        return [str(c) for c in batch.columns]
    raise InvalidArgument(f"a batch of type {type(batch).__name__}; use batch_format='pyarrow', 'pandas' or 'numpy'")


def _with_columns(batch: Any, new: dict[str, pa.Array]) -> Any:
    """The batch in its own format, with the new Arrow columns added (embeddings as float32 [n, dim] outside Arrow)."""
    if isinstance(batch, pa.Table):
        for name, column in new.items():
            batch = batch.append_column(name, column)
        return batch
    out = batch.copy()
    for name, column in new.items():
        if pa.types.is_fixed_size_list(column.type):  # fresh from embed_table: no offset, child values in row order
            dim = column.type.list_size
            values = np.asarray(column.values.to_numpy(zero_copy_only=False), np.float32).reshape(len(column), dim)
            if column.null_count:
                values = values.copy()
                values[~column.is_valid().to_numpy(zero_copy_only=False)] = np.nan
            out[name] = values if isinstance(batch, dict) else list(values)
        else:
            out[name] = column.to_numpy(zero_copy_only=False)
    return out
