"""A Parquet corpus (a file, a folder, a glob or an fsspec URL) read as a stream of small record batches.

Memory stays bounded whatever the corpus size: one file is read at a time, a row group at a time, in
batches of about `BATCH_BYTES` of text; only the id and text columns are read.

Each file is read with its own schema, so a file whose text column has a type that holds no text
(an integer, a struct...) does not stop the job: its rows come out with an `error` and the other files
go on. Every batch comes out normalised to three columns:

    id     string or int64 (one type for the whole corpus: the first file's)
    text   large_binary, the row's UTF-8 bytes (null: no text, or a type that holds none)
    error  string, set when the row's text column had an unusable type (null otherwise)
"""

from __future__ import annotations

import glob as globlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..errors import InvalidArgument

SCHEMA_COLUMNS = ("id", "text", "error")
# text a batch holds, about (files of 32 books or 8,000 short rows read in much the same time from 256 KiB to 4 MiB)
BATCH_BYTES = 1 << 20
MAX_BATCH_ROWS = 8192
_TEXT_TYPES = (pa.string(), pa.large_string(), pa.string_view(), pa.binary(), pa.large_binary(), pa.binary_view())
_GLOB_CHARS = frozenset("*?[")


def open_filesystem(url: str):
    """(fsspec filesystem, path inside it, whether it is the local disk) for a path or an fsspec URL."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    local = "file" in _protocols(fs)
    return fs, (os.path.abspath(path) if local else path), local


def arrow_filesystem(fs, local: bool) -> pafs.FileSystem:
    """The same filesystem for pyarrow: its native local one, or fsspec wrapped."""
    return pafs.LocalFileSystem() if local else pafs.PyFileSystem(pafs.FSSpecHandler(fs))


def _protocols(fs) -> tuple[str, ...]:
    return (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)


def _hidden(relative_path: str) -> bool:
    """Files Parquet writers keep beside the data (_SUCCESS, _metadata, .tmp files, .crc) are not data."""
    return any(part.startswith(("_", ".")) for part in relative_path.split("/"))


def list_parquet_files(url: str) -> tuple[object, list[str], bool]:
    """(fsspec fs, sorted file paths, local) for INPUT: a file, a folder (its *.parquet files, recursively,
    hidden ones skipped), or a glob. Sorted, so batches come in the same order on every run."""
    fs, path, local = open_filesystem(url)
    if _GLOB_CHARS & set(path):
        files = sorted(p for p in (globlib.glob(path, recursive=True) if local else fs.glob(path)) if fs.isfile(p))
        if not files:
            raise InvalidArgument(f"no file matches {url!r}")
        return fs, files, local
    if not fs.exists(path):
        raise InvalidArgument(f"input {url!r} does not exist; give a Parquet file, a folder, a glob or an fsspec URL")
    if fs.isfile(path):
        return fs, [path], local
    root = path.rstrip("/")
    files = sorted(p for p in fs.find(root) if p.endswith(".parquet") and not _hidden(p[len(root) + 1 :]))
    if not files:
        raise InvalidArgument(f"folder {url!r} holds no *.parquet file")
    return fs, files, local


@dataclass
class Corpus:
    """The input of one batch job: which files, which columns."""

    url: str
    id_column: str = "id"
    text_column: str = "text"

    def __post_init__(self) -> None:
        self.fs, self.files, self.local = list_parquet_files(self.url)
        self.dataset = ds.dataset(self.files, filesystem=arrow_filesystem(self.fs, self.local), format="parquet")
        self.id_type = self._id_type(self.dataset.schema, self.files[0])

    def count_rows(self) -> int:
        """Rows in the corpus, from the Parquet footers (no data read)."""
        return self.dataset.count_rows()

    def batches(self, batch_bytes: int = BATCH_BYTES) -> Iterator[pa.Table]:
        """Normalised batches (module doc) in file and row order, of about `batch_bytes` of text each (by the
        file's mean row: one row when a row is a book; the job regroups them into parts by rows and bytes)."""
        for path in self.files:
            # (ParquetFile reads a row group at a time as the dataset scanner does, in about 20% less time for a
            # file of 32 books or of 8,000 short rows on the workplace VM: bench/RESULTS.md, session 54; its footer,
            # read once, gives the schema checked here and the batch size)
            with self.dataset.filesystem.open_input_file(path) as f:
                file = pq.ParquetFile(f)
                schema = file.schema_arrow
                id_type = self._id_type(schema, path)
                if id_type != self.id_type:
                    raise InvalidArgument(
                        f"column {self.id_column!r} is {id_type} in {path} but {self.id_type} in {self.files[0]}; "
                        "give every file the same id type"
                    )
                if self.text_column not in schema.names:
                    raise InvalidArgument(f"{path} has no text column {self.text_column!r}; its columns are "
                                          f"{schema.names} (choose one with --text-column)")
                rows = _rows_per_batch(file.metadata, self.text_column, batch_bytes)
                for batch in file.iter_batches(batch_size=rows, columns=[self.id_column, self.text_column],
                                               use_threads=False):
                    if batch.num_rows:
                        yield normalize(pa.Table.from_batches([batch]), self.id_column, self.text_column)

    def _id_type(self, schema: pa.Schema, path: str) -> pa.DataType:
        if self.id_column not in schema.names:
            raise InvalidArgument(f"{path} has no id column {self.id_column!r}; its columns are {schema.names} "
                                  "(choose one with --id-column)")
        return id_type(schema.field(self.id_column).type, self.id_column)


def _rows_per_batch(metadata: pq.FileMetaData, text_column: str, batch_bytes: int) -> int:
    """Rows of a file's mean size (its text column's bytes as stored, uncompressed) in batch_bytes, within [1,
    MAX_BATCH_ROWS]; MAX_BATCH_ROWS when the column is not a plain one (it then holds no text: each row an error)."""
    size = sum(rg.column(j).total_uncompressed_size for rg in map(metadata.row_group, range(metadata.num_row_groups))
               for j in range(rg.num_columns) if rg.column(j).path_in_schema == text_column)
    if not size:
        return MAX_BATCH_ROWS
    return max(1, min(MAX_BATCH_ROWS, batch_bytes * metadata.num_rows // size))


def id_type(t: pa.DataType, column: str) -> pa.DataType:
    """The output id type for an input id column type: string or int64."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_integer(t):
        return pa.int64()
    raise InvalidArgument(f"id column {column!r} has type {t}; ids must be strings or integers")


def normalize(table: pa.Table, id_column: str, text_column: str) -> pa.Table:
    """An input table -> the three columns of the module doc (rows unchanged, in order)."""
    ids = _decode_dictionary(table.column(id_column))
    ids = ids.cast(id_type(ids.type, id_column))
    text = _decode_dictionary(table.column(text_column))
    n = table.num_rows
    if text.type in _TEXT_TYPES:
        error = pa.nulls(n, pa.string())
        text = text.cast(pa.large_binary())
    else:
        message = (f"text column {text_column!r} has type {text.type} here; it must be string "
                   "(or UTF-8 binary)")
        error = pa.array([message] * n, pa.string())
        text = pa.nulls(n, pa.large_binary())
    return pa.table({"id": ids, "text": text, "error": error})


def _decode_dictionary(col: pa.ChunkedArray) -> pa.ChunkedArray:
    return col.cast(col.type.value_type) if pa.types.is_dictionary(col.type) else col
