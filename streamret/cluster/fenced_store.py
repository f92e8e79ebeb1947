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
The store's file operations and its revision bookkeeping are the `DurableStore` hooks.
"""

from __future__ import annotations

import threading

from ..engine.durability import DurableStore
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

    def _records(self, stream_id: str) -> list[tuple[tuple[int, int], str]]:
        folder = self.folder(stream_id)
        found = ((_record_key(n), n) for n in self.listdir(folder))
        return sorted((key, f"{folder}/{n}") for key, n in found if key is not None)

    # ---- ownership

    def epoch(self, stream_id: str) -> int | None:
        """The epoch this store holds for the stream (None: not taken by this store)."""
        return self._epochs.get(stream_id)

    def owns(self, stream_id: str) -> bool:
        """True when this store holds the stream's newest epoch (one existence check)."""
        held = self._epochs.get(stream_id)
        return held is not None and not self.path_exists(self._marker(stream_id, held + 1))

    def claim(self, stream_id: str) -> int:
        """Take the stream: keep the newest epoch if this store holds it, else create the next marker."""
        with self._claim_locks[hash(stream_id) % len(self._claim_locks)]:
            if self.owns(stream_id):
                return self._epochs[stream_id]
            folder = self.folder(stream_id)
            self.makedirs(folder)
            marks = [int(n[len(_MARK) :]) for n in self.listdir(folder) if n.startswith(_MARK)]
            epoch = max(marks, default=0) + 1
            while not self.create_exclusive(self._marker(stream_id, epoch), self.owner.encode()):
                epoch += 1  # another worker took this epoch at the same moment: go past it
            self._epochs[stream_id] = epoch
            self.fenced.discard(stream_id)
            self.forget_revision(stream_id)  # what this store wrote before is stale news (the stream may be new)
            return epoch

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
                data = self.cat(path)
            except FileNotFoundError:
                continue  # superseded by a newer record while we listed: list again
            self.note_revision(stream_id, revision)  # a snapshot taken before this store lost the stream never lands
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
        if self.stale(stream_id, revision):
            return False
        path = self._record(stream_id, epoch, revision)
        self.put(path, data)
        if self.path_exists(self._marker(stream_id, epoch + 1)):
            self.fenced.add(stream_id)
            raise StreamMoved(f"stream {stream_id!r} moved to another worker (epoch {epoch + 1} > {epoch}); "
                              "resend from its durable_seq + 1")
        first = self.note_revision(stream_id, revision)
        for key, old in self._records(stream_id):
            if key < (epoch, revision):
                self.remove(old)
        if first:
            self.remove(self.path(stream_id))  # a record of the embedded layout is now superseded
        return True

    def delete(self, stream_id: str) -> None:
        self.claim(stream_id)  # a stale owner's late write lands at an older epoch: fenced, never read
        for _, path in self._records(stream_id):
            self.remove(path)
        super().delete(stream_id)
        self._epochs.pop(stream_id, None)

    def forget(self, stream_id: str) -> None:
        """Give the stream up (after handing it over): the next read takes it again."""
        self._epochs.pop(stream_id, None)
        self.fenced.discard(stream_id)
