"""Where stream states live: device (hot) -> host memory (warm) -> durable store (cold).

- Device tier: one preallocated-by-doubling slab of rows per state tensor, under a byte budget, so a
  step gathers and scatters its streams with one indexed copy per tensor.
- Host tier: per-stream CPU tensors under a byte budget; the least recently used device rows spill
  here, and the least recently used idle host streams are written to the durable store and dropped.
- Durable tier: one record per stream (record.py) in a local folder or at an fsspec URL, written
  atomically (temp file, fsync, rename; fsspec: write temp, then move). File names are the sha256
  of the stream id, so no id can name a path outside the store; the id is also stored inside.
  Writes carry the stream's revision and an older revision never replaces a newer one.
A stream with work in flight or queued is never dropped to the durable tier.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..errors import DurableWriteFailed, ResourceExhausted, TooBusy
from ..model.retnet import RetNet, RetNetState
from . import record
from .record import StreamCodec
from .stream import Stream

log = logging.getLogger("streamret.engine")

# ---------------------------------------------------------------------------------------------
# durable tier


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
                self._remove(tmp)
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
            if self.fs is None:
                os.makedirs(folder, exist_ok=True)
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            else:
                self.fs.makedirs(folder, exist_ok=True)
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
            self._remove(tmp)
        except Exception as e:  # noqa: BLE001  (the write's own error is the one to report)
            log.warning("could not remove the temp file of a failed durable write: %s", e)

    def read(self, stream_id: str) -> bytes | None:
        path = self.path(stream_id)
        try:
            if self.fs is None:
                with open(path, "rb") as f:
                    return f.read()
            return self.fs.cat_file(path)
        except FileNotFoundError:
            return None

    def exists(self, stream_id: str) -> bool:
        path = self.path(stream_id)
        return os.path.exists(path) if self.fs is None else self.fs.exists(path)

    def delete(self, stream_id: str) -> None:
        """Remove the stream's record; DurableWriteFailed when storage refuses (the record stays)."""
        with self._lock:
            try:
                self._remove(self.path(stream_id))
            except Exception as e:
                raise _write_failed(e, message=_NOT_REMOVED) from e
            self._written.pop(stream_id, None)

    def _remove(self, path: str) -> None:
        try:
            os.remove(path) if self.fs is None else self.fs.rm(path)
        except FileNotFoundError:
            pass


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
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class _WriteJob:
    revision: int
    meta: dict
    tensors: dict[str, torch.Tensor]
    callbacks: list[Callable[[Exception | None], None]] = field(default_factory=list)


class DurableWriter:
    """Writes records on one background thread so that steps never wait on storage.

    Jobs for the same stream that have not started yet are merged: only the newest snapshot is
    written, and every caller's callback runs once it is (with the exception if writing failed).
    Groups (tenants) take turns, one record each: a tenant with a thousand streams owing records delays
    another tenant's record by at most one write per other group with work, not by a thousand.
    """

    def __init__(self, store: DurableStore):
        self.store = store
        self._jobs: dict[str, _WriteJob] = {}
        self._queues: dict[str, deque[str]] = {}  # group -> its streams with a job, oldest first
        self._turns: deque[str] = deque()  # groups with jobs, in the order they write next
        self._cond = threading.Condition()
        self._busy = False
        self._closed = False
        self.errors = 0
        self._thread = threading.Thread(target=self._run, name="streamret-durable-writer", daemon=True)
        self._thread.start()

    def submit(self, stream_id: str, revision: int, meta: dict, tensors: dict[str, torch.Tensor],
               done: Callable[[Exception | None], None], group: str = "") -> None:
        with self._cond:
            job = self._jobs.get(stream_id)
            if job is None:
                job = self._jobs[stream_id] = _WriteJob(revision, meta, tensors)
                if group not in self._queues:
                    self._queues[group] = deque()
                    self._turns.append(group)
                self._queues[group].append(stream_id)
            elif revision >= job.revision:
                job.revision, job.meta, job.tensors = revision, meta, tensors
            job.callbacks.append(done)
            self._cond.notify_all()

    def drain(self) -> None:
        """Wait until every submitted record is written."""
        with self._cond:
            self._cond.wait_for(lambda: not self._jobs and not self._busy)

    def close(self) -> None:
        self.drain()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._jobs or self._closed)
                if not self._jobs:
                    return
                group = self._turns.popleft()
                queue = self._queues[group]
                sid = queue.popleft()
                if queue:
                    self._turns.append(group)
                else:
                    del self._queues[group]
                job = self._jobs.pop(sid)
                self._busy = True
            error = None
            try:
                self.store.write(sid, job.revision, record.encode(job.meta, job.tensors))
            except Exception as e:  # storage failures reach the callers; the engine keeps running
                error = e
                self.errors += 1
            for cb in job.callbacks:
                cb(error)
            with self._cond:
                self._busy = False
                self._cond.notify_all()


# ---------------------------------------------------------------------------------------------
# device and host tiers


class DeviceSlab:
    """Rows of per-stream state on the model's device; grows by doubling up to `capacity` rows."""

    def __init__(self, model: RetNet, capacity: int):
        self.model = model
        self.capacity = capacity
        with torch.inference_mode():
            self.state = model.init_state(min(capacity, 16))
        self.rows: OrderedDict[str, int] = OrderedDict()  # stream id -> row, least recently used first
        self._free = list(range(self.state.n - 1, -1, -1))

    def __contains__(self, stream_id: str) -> bool:
        return stream_id in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def full(self) -> bool:
        return not self._free and self.state.n >= self.capacity

    @torch.inference_mode()
    def put(self, stream_id: str, state: RetNetState) -> None:
        """Place a stream [1] (on any device) in a free row (the caller made room)."""
        if not self._free:
            self._grow()
        row = self._free.pop()
        self.rows[stream_id] = row
        self.write([row], state.map(self._to_device))

    @torch.inference_mode()
    def take(self, stream_id: str) -> RetNetState:
        """Remove a stream and return a copy of its state [1]."""
        row = self.rows.pop(stream_id)
        self._free.append(row)
        return self.read([row])

    def row_of(self, stream_id: str) -> int:
        self.rows.move_to_end(stream_id)
        return self.rows[stream_id]

    @torch.inference_mode()
    def read(self, rows: list[int]) -> RetNetState:
        idx = self._to_device(torch.tensor(rows, dtype=torch.long))
        return self.state.map(lambda x: x.index_select(0, idx))

    @torch.inference_mode()
    def write(self, rows: list[int], state: RetNetState) -> None:
        idx = self._to_device(torch.tensor(rows, dtype=torch.long))
        for dst, src in zip(self.state.tensors().values(), state.tensors().values(), strict=True):
            dst.index_copy_(0, idx, src)

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        """A host tensor on the slab's device without waiting for the device's queue (a plain copy
        to a GPU synchronizes, and would stall the step loop behind the step that is running)."""
        device = self.state.positions.device
        if device.type != "cuda" or t.device == device:
            return t.to(device)
        return t.pin_memory().to(device, non_blocking=True)

    def _grow(self) -> None:
        """Double the rows, one tensor at a time so the peak is the new slab plus one old tensor."""
        old_n = self.state.n
        new_n = min(self.capacity, 2 * old_n)
        for i, old in enumerate(self.state.layers):
            self.state.layers[i] = _grown(old, new_n)
        for name in ("positions", "pool_sum", "pool_count"):
            setattr(self.state, name, _grown(getattr(self.state, name), new_n))
        self._free = list(range(new_n - 1, old_n - 1, -1))


def _grown(t: torch.Tensor, n: int) -> torch.Tensor:
    out = t.new_zeros((n, *t.shape[1:]))
    out[: t.shape[0]] = t
    return out


class StateStore:
    """Owns every resident stream (its `Stream` and its state) and moves them between tiers."""

    def __init__(self, model: RetNet, codec: StreamCodec, device_bytes: int, host_bytes: int,
                 durable: DurableStore | None):
        self.model = model
        self.codec = codec
        self.durable = durable
        with torch.inference_mode():
            self.state_bytes = model.init_state(1, device="cpu").nbytes()
        capacity = device_bytes // self.state_bytes
        if capacity < 1:
            raise ValueError(
                f"device_state_bytes={device_bytes} holds no stream (one needs {self.state_bytes} bytes); raise it"
            )
        self.device = DeviceSlab(model, capacity)
        self.host: OrderedDict[str, RetNetState] = OrderedDict()  # least recently used first
        self.host_capacity = max(0, host_bytes // self.state_bytes)
        self.streams: dict[str, Stream] = {}
        self.pinned: set[str] = set()  # in the step that runs now: their rows must not move
        self.evicted: set[str] = set()  # streams this process moved to the durable tier and has not reloaded

    # ---- lookup

    def get(self, stream_id: str) -> Stream | None:
        """The resident stream, or the durable one loaded into the host tier; None when it exists nowhere."""
        stream = self.streams.get(stream_id)
        if stream is not None or self.durable is None:
            return stream
        data = self.durable.read(stream_id)
        if data is None:
            return None
        stream, state = self.codec.decode(data, stream_id, origin="store")
        self.add(stream, state)
        self.evicted.discard(stream_id)
        return stream

    def tier(self, stream_id: str) -> str | None:
        if stream_id in self.device:
            return "device"
        if stream_id in self.host:
            return "host"
        return "durable" if self.durable is not None and self.durable.exists(stream_id) else None

    def counts(self) -> dict[str, int]:
        return {"device": len(self.device), "host": len(self.host), "durable": len(self.evicted)}

    # ---- residency

    def add(self, stream: Stream, state: RetNetState) -> None:
        """Make a stream resident: on the device when a row is free, else in the host tier."""
        if not self.device.full:
            self.device.put(stream.id, state)
        else:
            self._spill_host(need=1)
            if len(self.host) >= self.host_capacity:
                if self.durable is None:
                    raise ResourceExhausted(
                        f"{len(self.streams)} streams fill device_state_bytes and host_state_bytes and there is no "
                        "state_dir to spill to; close streams, raise the budgets or give the engine a state_dir"
                    )
                raise TooBusy(f"all {len(self.streams)} resident streams have work queued; retry shortly")
            self.host[stream.id] = state.to("cpu")
        self.streams[stream.id] = stream

    def remove(self, stream_id: str) -> None:
        """Forget a stream in memory (not in the durable store)."""
        self.streams.pop(stream_id, None)
        self.host.pop(stream_id, None)
        if stream_id in self.device:
            self.device.take(stream_id)

    def read(self, stream_id: str) -> RetNetState:
        """A copy of a resident stream's state [1] (on whichever device it is)."""
        if stream_id in self.device:
            return self.device.read([self.device.row_of(stream_id)])
        self.host.move_to_end(stream_id)
        return self.host[stream_id].clone()

    def gather(self, stream_ids: list[str]) -> RetNetState:
        """States [N] of resident streams on the model's device, in order; pins them until scatter."""
        self.pinned.update(stream_ids)
        for sid in stream_ids:
            if sid not in self.device:
                state = self.host.pop(sid)  # first, so the row it frees can take the device's victim
                try:
                    self._make_device_room()
                except BaseException:
                    self.host[sid] = state
                    raise
                self.device.put(sid, state)
        rows = [self.device.row_of(sid) for sid in stream_ids]
        return self.device.read(rows)

    def scatter(self, stream_ids: list[str], state: RetNetState) -> None:
        self.device.write([self.device.row_of(sid) for sid in stream_ids], state)
        self.pinned.difference_update(stream_ids)

    def unpin(self, stream_ids: list[str]) -> None:
        self.pinned.difference_update(stream_ids)

    def evict(self, stream_id: str) -> None:
        """Write a resident idle stream to the durable store and drop it from memory."""
        stream = self.streams[stream_id]
        stream.recorded = True
        self.durable.write(stream_id, stream.revision, self.codec.encode(stream, self.read(stream_id)))
        self.remove(stream_id)
        self.evicted.add(stream_id)

    def _make_device_room(self) -> None:
        if not self.device.full:
            return
        victim = next((sid for sid in self.device.rows if sid not in self.pinned), None)
        if victim is None:
            raise ResourceExhausted("every device row is in the current step; lower max_step_streams")
        self.host[victim] = self.device.take(victim).to("cpu")
        self._spill_host(need=0)

    def _spill_host(self, need: int) -> None:
        """Evict idle least recently used host streams to the durable store until `need` rows are free."""
        if self.durable is None:
            return
        for sid in list(self.host):
            if len(self.host) + need <= self.host_capacity:
                return
            if not self.streams[sid].busy:
                self.evict(sid)
