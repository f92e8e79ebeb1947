"""The durable store shared by every worker of a cluster, with owner-epoch fencing.

When a stream moves (a worker added, drained or dead), its new owner loads it from this store. A
worker that lost a stream but does not know it yet (a stale gateway still routes to it, or it was
only presumed dead) must never overwrite what the new owner writes. Each stream has a folder:

    <root>/<h[:2]>/<h>/epoch-000000000007                  owner markers, created exclusively
    <root>/<h[:2]>/<h>/r-000000000007-000000000000042.safetensors   records: epoch, revision

- Taking a stream (the first read of a stream this worker does not hold) creates the next epoch
  marker with an exclusive create (O_EXCL locally, mode "xb" through fsspec): exactly one worker
  wins each epoch. A worker that still holds the newest epoch keeps it without a new marker.
- Readers take the record with the highest (epoch, revision), so a stale owner's late record
  never shadows the new owner's.
- A writer stores its record first and then checks that no newer epoch exists. If one does, the
  write raises `StreamMoved` (the ack does not claim durability) and the stream is marked fenced,
  so its stale copy in memory is dropped. Record-then-check closes the race: a new owner creates
  its marker before it reads, so either it read this record or the writer sees its marker.
- Deleting a stream takes a new epoch first (stale owners stay fenced) and leaves the markers.
- A store writes only streams it holds, and never a revision older than the record it loaded: a
  snapshot queued before a hand-over cannot land after it. A stream created without a read
  (import, fork) is claimed explicitly first.

`<h>` is the sha256 of the stream id, as in the embedded `DurableStore`; a record that store left
(`<h>.safetensors`) is read as epoch 0, so a state folder moves from one process to a cluster as is.
"""

from __future__ import annotations

import os
import threading

from ..engine.durability.store import DurableStore, _fsync_dir
from ..errors import Unavailable


class StreamMoved(Unavailable):
    """Another worker took the stream over; this worker's copy is stale."""


_MARK = "epoch-"
_REC = "r-"


def _record_key(name: str) -> tuple[int, int] | None:
    """(epoch, revision) of a record file name, None for any other file."""
    if not (name.startswith(_REC) and name.endswith(DurableStore.SUFFIX)):
        return None
    epoch, _, revision = name[len(_REC) : -len(DurableStore.SUFFIX)].partition("-")
    return int(epoch), int(revision)


class FencedStore(DurableStore):
    """A `DurableStore` (same methods, so the engine takes it as is) that many workers share safely."""

    def __init__(self, url: str, owner: str):
        super().__init__(url)
        self.owner = owner  # written into the markers this store creates (for people reading the folder)
        self._epochs: dict[str, int] = {}  # stream id -> epoch this store holds
        self._claim_locks = [threading.Lock() for _ in range(64)]  # striped: loads of other streams go on
        self.fenced: set[str] = set()  # streams taken over by another worker since this one held them

    # ---- layout

    def folder(self, stream_id: str) -> str:
        return self.path(stream_id)[: -len(self.SUFFIX)]

    def _marker(self, stream_id: str, epoch: int) -> str:
        return f"{self.folder(stream_id)}/{_MARK}{epoch:012d}"

    def _record(self, stream_id: str, epoch: int, revision: int) -> str:
        return f"{self.folder(stream_id)}/{_REC}{epoch:012d}-{revision:015d}{self.SUFFIX}"

    def _names(self, folder: str) -> list[str]:
        try:
            if self.fs is None:
                return os.listdir(folder)
            return [p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(folder, detail=False)]
        except FileNotFoundError:
            return []

    def _records(self, stream_id: str) -> list[tuple[tuple[int, int], str]]:
        folder = self.folder(stream_id)
        found = ((_record_key(n), n) for n in self._names(folder))
        return sorted((key, f"{folder}/{n}") for key, n in found if key is not None)

    def _exists(self, path: str) -> bool:
        return os.path.exists(path) if self.fs is None else self.fs.exists(path)

    # ---- ownership

    def epoch(self, stream_id: str) -> int | None:
        """The epoch this store holds for the stream (None: not taken by this store)."""
        return self._epochs.get(stream_id)

    def owns(self, stream_id: str) -> bool:
        """True when this store holds the stream's newest epoch (one existence check)."""
        held = self._epochs.get(stream_id)
        return held is not None and not self._exists(self._marker(stream_id, held + 1))

    def claim(self, stream_id: str) -> int:
        """Take the stream: keep the newest epoch if this store holds it, else create the next marker."""
        with self._claim_locks[hash(stream_id) % len(self._claim_locks)]:
            if self.owns(stream_id):
                return self._epochs[stream_id]
            folder = self.folder(stream_id)
            if self.fs is None:
                os.makedirs(folder, exist_ok=True)
            else:
                self.fs.makedirs(folder, exist_ok=True)
            marks = [int(n[len(_MARK) :]) for n in self._names(folder) if n.startswith(_MARK)]
            epoch = max(marks, default=0) + 1
            while not self._create_exclusive(self._marker(stream_id, epoch), self.owner.encode()):
                epoch += 1  # another worker took this epoch at the same moment: go past it
            self._epochs[stream_id] = epoch
            self.fenced.discard(stream_id)
            with self._lock:  # revisions this store wrote before are stale news (the stream may even be new)
                self._written.pop(stream_id, None)
            return epoch

    def _create_exclusive(self, path: str, data: bytes) -> bool:
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

    # ---- DurableStore methods

    def read(self, stream_id: str) -> bytes | None:
        """Take the stream, then return its newest record (None when it has none)."""
        self.claim(stream_id)
        for _ in range(8):
            records = self._records(stream_id)
            if not records:
                return super().read(stream_id)  # a record of the embedded layout, or None
            (_, revision), path = records[-1]
            try:
                data = self._cat(path)
            except FileNotFoundError:
                continue  # superseded by a newer record while we listed: list again
            with self._lock:  # a snapshot this store took before it lost the stream must never land now
                self._written[stream_id] = max(revision, self._written.get(stream_id, -1))
            return data
        raise Unavailable(f"the records of stream {stream_id!r} keep changing under this reader; retry")

    def exists(self, stream_id: str) -> bool:
        return bool(self._records(stream_id)) or super().exists(stream_id)

    def write(self, stream_id: str, revision: int, data: bytes) -> bool:
        """Store a record at this store's epoch; StreamMoved when this store does not hold the stream
        (given up, or a late write of a snapshot from before) or a newer owner exists."""
        epoch = self._epochs.get(stream_id)
        if epoch is None:
            raise StreamMoved(f"stream {stream_id!r} is not held by this worker (handed over or taken over); "
                              "its record is not written")
        with self._lock:
            if revision < self._written.get(stream_id, -1):
                return False
        path = self._record(stream_id, epoch, revision)
        self._put(path, data)
        if self._exists(self._marker(stream_id, epoch + 1)):
            self.fenced.add(stream_id)
            raise StreamMoved(f"stream {stream_id!r} moved to another worker (epoch {epoch + 1} > {epoch}); "
                              "resend from its durable_seq + 1")
        with self._lock:
            first = stream_id not in self._written
            self._written[stream_id] = max(revision, self._written.get(stream_id, -1))
        for key, old in self._records(stream_id):
            if key < (epoch, revision):
                self._remove(old)
        if first:
            self._remove(self.path(stream_id))  # a record of the embedded layout is now superseded
        return True

    def delete(self, stream_id: str) -> None:
        self.claim(stream_id)  # a stale owner's late write lands at an older epoch: fenced, never read
        for _, path in self._records(stream_id):
            self._remove(path)
        super().delete(stream_id)
        self._epochs.pop(stream_id, None)

    def forget(self, stream_id: str) -> None:
        """Give the stream up (after handing it over): the next read takes it again."""
        self._epochs.pop(stream_id, None)
        self.fenced.discard(stream_id)

    # ---- files

    def _cat(self, path: str) -> bytes:
        if self.fs is None:
            with open(path, "rb") as f:
                return f.read()
        return self.fs.cat_file(path)

    def _put(self, path: str, data: bytes) -> None:
        """Atomic write: the engine store's stage (temp file, fsynced) then publish (rename)."""
        self.publish(self.stage(path, data), path)
