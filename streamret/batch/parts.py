"""The output of a batch job: a folder (local or fsspec URL) of Parquet part files, read as one dataset.

A local job commits `part-000000.parquet`, `part-000001.parquet` ... each atomically (written under a
hidden temporary name, fsynced, renamed), so a crash leaves only whole parts and a rerun knows exactly
which rows are done. A Ray job writes `ray_*.parquet` files through Ray Data; a Ray write cut short by a
crash can leave a file without its footer, which the next run removes (it holds no committed row).

Every file carries the writing model's fingerprint and the embeddings' role ("query" or "document":
streamret/model/document_map.py) in its schema metadata, so a rerun with another model or another role is refused
instead of mixing two models' (or two roles') embeddings in one output. A file without a role (written before roles
existed) holds plain embeddings: role "query".
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import FailedPrecondition, InvalidArgument, ModelMismatch
from .corpus import arrow_filesystem, open_filesystem

log = logging.getLogger("streamret.batch")

FINGERPRINT_KEY = b"streamret.model_fingerprint"
ROLE_KEY = b"streamret.embedding_role"
UNTAGGED_ROLE = "query"  # the role of a file written before roles existed: plain embeddings
RAY_PREFIX = "ray_"
_PART = re.compile(r"part-(\d+)\.parquet")
_TEMP_SUFFIX = ".tmp"


def _write_options(schema: pa.Schema) -> dict:
    """Dictionary encoding and page statistics for every column but the embeddings: their floats are nearly all
    distinct, so the writer's dictionary attempt is work thrown away, and no reader filters on a page's smallest
    and largest embedding value (8,000 rows of 384: 53 -> 29 ms a part on the workplace VM, and a smaller file)."""
    leaves = [path for field in schema if field.name != "embedding" for path in _leaf_paths(field.name, field.type)]
    return {"use_dictionary": leaves, "write_statistics": leaves}


def _leaf_paths(name: str, kind: pa.DataType) -> list[str]:
    """A column's leaf columns as Parquet names them (a list's values: `name.list.element`)."""
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _leaf_paths(f"{name}.list.element", kind.value_type)
    if pa.types.is_struct(kind):
        return [path for field in kind for path in _leaf_paths(f"{name}.{field.name}", field.type)]
    return [name]


def with_fingerprint(table: pa.Table, fingerprint: str, role: str = "query") -> pa.Table:
    """`table` tagged with the model that wrote it and its embeddings' role (what a resume checks)."""
    return table.replace_schema_metadata({**(table.schema.metadata or {}), FINGERPRINT_KEY: fingerprint.encode(),
                                          ROLE_KEY: role.encode()})


def role_of(metadata: dict | None) -> str:
    """The embeddings' role a file's schema metadata names ("query" when it names none)."""
    return (metadata or {}).get(ROLE_KEY, b"").decode() or UNTAGGED_ROLE


@dataclass(frozen=True)
class WrittenRows:
    """What the output already holds: rows per id (None for rows without an id) and their totals."""

    ids: Counter
    rows: int
    errors: int
    tokens: int


class PartEncoder:
    """A part's Parquet file, encoded in memory a row group at a time as its rows are handed over, on a thread of
    its own (Arrow's encoder lets go of the GIL), so that what is left when the part's last rows come back is
    encoding those: the whole part took 29-50 ms on an H100's host (8,000 short documents: bench/RESULTS.md,
    session 53). Every table added has the same schema (the first one's, with its metadata); `finish` gives the
    file, `abandon` drops it."""

    def __init__(self) -> None:
        self._out = pa.BufferOutputStream()
        self._writer: pq.ParquetWriter | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="streamret-part-encode")
        self._writes: list[Future] = []

    def add(self, table: pa.Table) -> None:
        self._writes.append(self._thread.submit(self._write, table))

    def _write(self, table: pa.Table) -> None:
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._out, table.schema, **_write_options(table.schema))
        self._writer.write_table(table)

    def finish(self) -> pa.Buffer:
        """The whole file (each write's error, if one failed, raised here)."""
        self._thread.shutdown(wait=True)
        for write in self._writes:
            write.result()
        if self._writer is None:
            raise ValueError("a part's encoder was given no rows; add at least one table, if only an empty one")
        self._writer.close()
        data, self._out, self._writer = self._out.getvalue(), None, None
        return data

    def abandon(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)


class PartFolder:
    def __init__(self, url: str, create: bool = True):
        """create=False: the folder is made by prepare_resume, once the job knows it can run (a job refused
        up front, e.g. for a role its model does not serve, leaves nothing behind)."""
        self.url = url
        self.fs, self.root, self.local = open_filesystem(url)
        if self.fs.isfile(self.root):
            raise InvalidArgument(f"output {url!r} is a file; give a folder (it will hold part-*.parquet files)")
        if create:
            self.fs.makedirs(self.root, exist_ok=True)

    # ---- what is there

    def files(self) -> list[str]:
        """Data files (full paths), sorted; temporary and hidden files are not data. No folder yet: none."""
        try:
            names = [p.rsplit("/", 1)[-1] for p in self.fs.ls(self.root, detail=False)]
        except FileNotFoundError:
            return []
        return sorted(f"{self.root}/{n}" for n in names if n.endswith(".parquet") and not n.startswith(("_", ".")))

    def prepare_resume(self, fingerprint: str | None, role: str = "query") -> WrittenRows:
        """Make the folder if it is not there; remove leftovers of a crash (temporary parts, footerless Ray
        files), refuse another model's output (unless fingerprint is None: no check) and output in another
        embedding role, and count the rows already written."""
        self.fs.makedirs(self.root, exist_ok=True)
        for name in self.fs.ls(self.root, detail=False):
            if name.rsplit("/", 1)[-1].startswith(".part-") and name.endswith(_TEMP_SUFFIX):
                self.fs.rm(name)
        ids: Counter = Counter()
        rows = errors = tokens = 0
        for path in self.files():
            try:
                meta = pq.read_schema(path, filesystem=self.arrow_fs()).metadata or {}
            except (pa.ArrowInvalid, OSError) as e:
                if path.rsplit("/", 1)[-1].startswith(RAY_PREFIX):
                    log.warning("removing %s: a Ray write cut short (%s); its rows will be embedded again", path, e)
                    self.fs.rm(path)
                    continue
                raise InvalidArgument(f"output file {path} is not readable Parquet ({e}); move it out of "
                                      f"{self.url!r} and rerun") from None
            theirs = meta.get(FINGERPRINT_KEY, b"").decode() or None
            if fingerprint is not None and theirs != fingerprint:
                raise ModelMismatch(f"{path} was written by model {theirs!r}, this job runs {fingerprint!r}; "
                                    "write to a new output folder or use the model that wrote it")
            self._check_role(path, role_of(meta), role)
            t = pq.read_table(path, columns=["id", "tokens", "error"], filesystem=self.arrow_fs())
            ids.update(t.column("id").to_pylist())
            rows += t.num_rows
            errors += t.num_rows - t.column("error").null_count
            tokens += int(pc.sum(t.column("tokens")).as_py() or 0)
        return WrittenRows(ids, rows, errors, tokens)

    def _check_role(self, path: str, theirs: str, role: str) -> None:
        if theirs != role:
            raise FailedPrecondition(
                f"{path} holds embeddings of role {theirs!r}, this job writes role {role!r}, and one output folder "
                f"holds one role; write role {role!r} to another output folder (-o), or resume {self.url!r} with "
                f"role {theirs!r} (--role {theirs})")

    def next_part(self) -> int:
        indices = [int(m.group(1)) for p in self.files() if (m := _PART.fullmatch(p.rsplit("/", 1)[-1]))]
        return max(indices, default=-1) + 1

    # ---- writing

    def commit(self, index: int, part: pa.Table | PartEncoder) -> str:
        """Write a table, or the Parquet file a PartEncoder made, as part `index`, atomically: readers see the
        whole part or nothing."""
        if isinstance(part, PartEncoder):
            data = part.finish()
        else:
            buf = pa.BufferOutputStream()
            pq.write_table(part, buf, **_write_options(part.schema))
            data = buf.getvalue()
        name = f"part-{index:06d}.parquet"
        final, tmp = f"{self.root}/{name}", f"{self.root}/.{name}.{uuid.uuid4().hex}{_TEMP_SUFFIX}"
        if self.local:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
            fd = os.open(self.root, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        else:  # object stores publish a PUT whole; the move keeps other fsspec backends atomic too
            self.fs.pipe_file(tmp, data.to_pybytes())
            self.fs.mv(tmp, final)
        return final

    def arrow_fs(self):
        return arrow_filesystem(self.fs, self.local)
