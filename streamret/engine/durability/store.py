"""The durable tier: one record per stream (record.py) in a local folder or at an fsspec URL.

Records are written atomically (temp file, fsync, rename; fsspec: write temp, then move). File names
are the sha256 of the stream id, so no id can name a path outside the store; the id is also stored
inside. Writes carry the stream's revision and an older revision never replaces a newer one.

A store with another layout (the cluster's fenced store, streamret/cluster/fenced_store.py) extends
this one through its public hooks: the file operations (local or fsspec, decided here once) and the
newest revision known per stream.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import uuid

from ...errors import DurableWriteFailed

log = logging.getLogger("streamret.engine")


class DurableStore:
    """Stream records by id under a local folder or an fsspec URL (e.g. memory://x, s3://bucket/p)."""

    SUFFIX = ".safetensors"

    def __init__(self, url: str):
        self.url = url
        self._lock = threading.Lock()
        self._written: dict[str, int] = {}  # stream id -> newest revision written by this process
        self.writable = True  # False from a failed write until a write or a probe succeeds
        if "://" in url and not url.startswith("file://"):
            import fsspec

            self.fs, self.root = fsspec.core.url_to_fs(url)
            self.fs.makedirs(self.root, exist_ok=True)
        else:
            self.fs = None
            self.root = os.path.realpath(url.removeprefix("file://"))
            os.makedirs(self.root, exist_ok=True)

    def path(self, stream_id: str) -> str:
        h = hashlib.sha256(stream_id.encode("utf-8")).hexdigest()
        return f"{self.root}/{h[:2]}/{h}{self.SUFFIX}"

    def write(self, stream_id: str, revision: int, data: bytes) -> bool:
        """Atomically store `data` as the stream's record unless a newer revision is already there."""
        path = self.path(stream_id)
        tmp = self.stage(path, data)
        with self._lock:
            if revision < self._written.get(stream_id, -1):
                self.remove(tmp)
                return False
            self.publish(tmp, path)
            self._written[stream_id] = revision
        return True

    def stage(self, path: str, data: bytes, quiet: bool = False) -> str:
        """First half of an atomic write: `data` in a temp file beside `path` (fsynced locally).
        DurableWriteFailed when storage refuses (read-only, full, unreachable); no temp file is left.
        quiet: do not log the failure (a probe)."""
        folder = path.rsplit("/", 1)[0]
        tmp = f"{folder}/.{uuid.uuid4().hex}.tmp"
        try:
            self.makedirs(folder)
            if self.fs is None:
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            else:
                self.fs.pipe_file(tmp, data)
        except Exception as e:
            self.writable = False
            self._discard(tmp)
            raise _write_failed(e, quiet) from e
        return tmp

    def publish(self, tmp: str, path: str, quiet: bool = False) -> None:
        """Second half: rename the staged file over `path` (and fsync the folder locally).
        DurableWriteFailed when storage refuses; the temp file is removed then."""
        try:
            if self.fs is None:
                os.replace(tmp, path)
                _fsync_dir(path.rsplit("/", 1)[0])
            else:
                self.fs.mv(tmp, path)
        except Exception as e:
            self.writable = False
            self._discard(tmp)
            raise _write_failed(e, quiet) from e
        self.writable = True

    def probe(self) -> bool:
        """Write, publish and remove a small file the way records are written; True (and `writable` again)
        when storage takes writes now. For a health check while `writable` is False."""
        path = f"{self.root}/.probe{self.SUFFIX}"
        try:
            self.publish(self.stage(path, b"streamret write probe", quiet=True), path, quiet=True)
        except DurableWriteFailed:
            return False
        self._discard(path)
        return True

    def _discard(self, tmp: str) -> None:
        """Remove a temp file after a failed write, best effort (the storage may refuse that too)."""
        try:
            self.remove(tmp)
        except Exception as e:  # noqa: BLE001  (the write's own error is the one to report)
            log.warning("could not remove the temp file of a failed durable write: %s", e)

    def read(self, stream_id: str) -> bytes | None:
        try:
            return self.cat(self.path(stream_id))
        except FileNotFoundError:
            return None

    def exists(self, stream_id: str) -> bool:
        return self.path_exists(self.path(stream_id))

    def delete(self, stream_id: str) -> None:
        """Remove the stream's record; DurableWriteFailed when storage refuses (the record stays)."""
        with self._lock:
            try:
                self.remove(self.path(stream_id))
            except Exception as e:
                raise _write_failed(e, message=_NOT_REMOVED) from e
            self._written.pop(stream_id, None)

    # ---- hooks for stores that extend this one: the newest revision known per stream

    def stale(self, stream_id: str, revision: int) -> bool:
        """True when a newer revision of the stream was written or loaded here (this one must not land)."""
        with self._lock:
            return revision < self._written.get(stream_id, -1)

    def note_revision(self, stream_id: str, revision: int) -> bool:
        """Remember that `revision` of the stream is stored (the newest known wins); True when no revision of
        it was known before."""
        with self._lock:
            first = stream_id not in self._written
            self._written[stream_id] = max(revision, self._written.get(stream_id, -1))
        return first

    def forget_revision(self, stream_id: str) -> None:
        """Forget the revisions known of the stream (what this store wrote before is stale news)."""
        with self._lock:
            self._written.pop(stream_id, None)

    # ---- hooks: file operations, on the local file system or through fsspec

    def put(self, path: str, data: bytes) -> None:
        """Atomic write of `data` at `path` (stage, then publish); DurableWriteFailed when storage refuses."""
        self.publish(self.stage(path, data), path)

    def cat(self, path: str) -> bytes:
        """The file's bytes; FileNotFoundError when there is none."""
        if self.fs is None:
            with open(path, "rb") as f:
                return f.read()
        return self.fs.cat_file(path)

    def path_exists(self, path: str) -> bool:
        return os.path.exists(path) if self.fs is None else self.fs.exists(path)

    def listdir(self, folder: str) -> list[str]:
        """Names of the files in `folder` ([] when it does not exist)."""
        try:
            if self.fs is None:
                return os.listdir(folder)
            return [p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(folder, detail=False)]
        except FileNotFoundError:
            return []

    def makedirs(self, folder: str) -> None:
        os.makedirs(folder, exist_ok=True) if self.fs is None else self.fs.makedirs(folder, exist_ok=True)

    def remove(self, path: str) -> None:
        """Remove a file; one that is not there is fine."""
        try:
            os.remove(path) if self.fs is None else self.fs.rm(path)
        except FileNotFoundError:
            pass

    def create_exclusive(self, path: str, data: bytes) -> bool:
        """Create `path` with `data` unless it exists (False then): exactly one of many concurrent creators
        wins. OSError when the storage cannot create exclusively."""
        try:
            if self.fs is None:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                try:
                    os.write(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                _fsync_dir(os.path.dirname(path))
            else:
                with self.fs.open(path, "xb") as f:
                    f.write(data)
        except FileExistsError:
            return False
        except (NotImplementedError, ValueError) as e:
            raise OSError(f"the durable store {self.url} cannot create files exclusively ({e}); owner fencing "
                          "needs it: use a local or shared file system, or object storage with conditional writes"
                          ) from e
        return True


_NOT_WRITTEN = ("the server could not write the stream's durable record ({reason}); nothing was saved by this "
                "write, and it is tried again when the chunk is resent")
_NOT_REMOVED = ("the server could not remove the stream's durable record ({reason}); the stream was closed in "
                "memory but its record stays and loads on the stream's next use: close it again later")


def _write_failed(error: Exception, quiet: bool = False, message: str = _NOT_WRITTEN) -> DurableWriteFailed:
    """The client-safe error for a storage failure: its reason (e.g. "No space left on device"), not the
    server's paths, which go to the log."""
    if not quiet:
        log.error("durable store operation failed: %s", error)
    reason = error.strerror if isinstance(error, OSError) and error.strerror else type(error).__name__
    return DurableWriteFailed(message.format(reason=reason))


def _fsync_dir(folder: str) -> None:
    """Make a rename or a new file in `folder` durable (the folder's entry, not only the file's bytes)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

