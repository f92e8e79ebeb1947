"""Where stream states live: device (hot) -> host memory (warm) -> durable store (cold).

- Device tier: one preallocated-by-doubling slab of rows per state tensor, under a byte budget, so a
  step gathers and scatters its streams with one indexed copy per tensor.
- Host tier: per-stream CPU tensors under a byte budget; the least recently used device rows spill
  here, and the least recently used idle host streams are written to the durable store and dropped.
- Durable tier: one record per stream, in the durable store (durability/store.py).
A stream with work in flight or queued is never dropped to the durable tier.

Storage is never touched here with the engine lock held for long: an eviction hands its record to the
durable writer (`recorder`) and keeps the stream in `leaving` until it is written (a use before then takes
it back), and a cold load's read can be done before the lock is taken (`prefetch`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ResourceExhausted, TooBusy
from ..model.retnet import RetNet, RetNetState
from .durability.store import DurableStore
from .record import StreamCodec
from .staging import Staging
from .stream import Stream

log = logging.getLogger("streamret.engine")


@dataclass(frozen=True)
class Prefetched:
    """A stream's record read before the engine lock was taken; `get` uses it only while nothing can have
    changed the record since (the same delete epoch, and no newer revision written or loaded here)."""

    stream_id: str
    epoch: int
    decoded: tuple[Stream, RetNetState] | None  # None: there was no record


# the step loop keeps at most this many steps' gathered states alive: it gathers step k + 1 while step k runs,
# and scatters step k before it gathers step k + 2 (core.EngineCore._steps_forever)
GATHERS_ALIVE = 2


class DeviceSlab:
    """Rows of per-stream state on the model's device; grows by doubling up to `capacity` rows.

    One more row than the streams' (the last, `_zero_row`) is always zeros: a new stream's row is not zeroed
    where it lies (one multi-tensor launch, about 65 us of a GPU host's CPU, per stream opened: a batch of short
    documents opens thousands; bench/RESULTS.md, session 51) but marked, and reads of it come from the zero row
    until its first write (`_read_rows`)."""

    def __init__(self, model: RetNet, capacity: int):
        self.model = model
        self.capacity = capacity
        self.n = min(capacity, 16)  # rows for streams (the state holds one more: the zero row)
        with torch.inference_mode():
            self.state = model.init_state(self.n + 1)
        self.rows: OrderedDict[str, int] = OrderedDict()  # stream id -> row, least recently used first
        self._free = list(range(self.n - 1, -1, -1))
        self._unwritten: set[int] = set()  # rows of new streams, read as the zero row until written (put_new)
        # a gather and a scatter per step, two steps in flight: a slot comes round again only after the
        # step that used it last was waited for
        self._staging = Staging(slots=8)
        # on the CPU, where a step's states gathered into fresh memory (~0.5 MB a stream) cost more in page
        # faults than in copying: buffers reused in turn (`gather`)
        self._gather_buffers: list[RetNetState | None] = [None] * GATHERS_ALIVE
        self._gathers = 0

    def __contains__(self, stream_id: str) -> bool:
        return stream_id in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def full(self) -> bool:
        return not self._free and self.n >= self.capacity

    @property
    def _zero_row(self) -> int:
        return self.n

    @torch.inference_mode()
    def put(self, stream_id: str, state: RetNetState) -> None:
        """Place a stream [1] (on any device) in a free row (the caller made room)."""
        if not self._free:
            self._grow()
        row = self._free.pop()
        self.rows[stream_id] = row
        self.write([row], state.map(self._to_device))

    def put_new(self, stream_id: str) -> None:
        """Place a new stream (the model's initial state: zeros) in a free row, with no device work: the row
        reads as the zero row until it is first written (class doc). `put` of a host state would upload row
        indices through a staging slot, and taking a slot waits for the copy that used it last, queued behind the
        step that runs now: opening streams between steps (a batch of short documents) then held the engine lock
        for most of a step."""
        if not self._free:
            self._grow()
        row = self._free.pop()
        self.rows[stream_id] = row
        self._unwritten.add(row)

    def drop(self, stream_id: str) -> None:
        """Free a stream's row; its state is not read (`take` reads it, through a staging slot: see put_new)."""
        row = self.rows.pop(stream_id)
        self._unwritten.discard(row)
        self._free.append(row)

    @torch.inference_mode()
    def take(self, stream_id: str) -> RetNetState:
        """Remove a stream and return a copy of its state [1]."""
        row = self.rows[stream_id]
        state = self.read([row])
        self.drop(stream_id)
        return state

    def row_of(self, stream_id: str) -> int:
        self.rows.move_to_end(stream_id)
        return self.rows[stream_id]

    @torch.inference_mode()
    def read(self, rows: list[int], idx: torch.Tensor | None = None) -> RetNetState:
        """rows' states; idx: the rows to read on the device already (`_read_rows` of them)."""
        idx = self._rows_on_device(self._read_rows(rows))[0] if idx is None else idx
        return self.state.map(lambda x: x.index_select(0, idx))

    @torch.inference_mode()
    def gather(self, rows: list[int]) -> tuple[RetNetState, torch.Tensor]:
        """`read` for a step, and the rows' indices on the device (for `write`). On the CPU into the next of
        GATHERS_ALIVE reused buffers, which come round again only after the step that gathered into one was
        scattered (see GATHERS_ALIVE); on a GPU the caching allocator reuses memory already."""
        read_rows = self._read_rows(rows)
        if read_rows is rows:
            idx = read_idx = self._rows_on_device(rows)[0]
        else:  # a new stream's row reads as the zero row (`put_new`): both in one upload
            idx, read_idx = self._rows_on_device(rows, read_rows)
        if self.state.positions.device.type == "cuda":
            return self.read(rows, read_idx), idx
        turn = self._gathers % GATHERS_ALIVE
        self._gathers += 1
        buffer = self._gather_buffers[turn]
        if buffer is None or buffer.n < len(rows):
            n = 1 << (len(rows) - 1).bit_length()  # powers of two: a few sizes as steps vary
            buffer = self._gather_buffers[turn] = self.state.map(lambda x: x.new_empty((n, *x.shape[1:])))
        out = buffer.map(lambda x: x[: len(rows)])
        for src, dst in zip(self.state.tensors().values(), out.tensors().values(), strict=True):
            torch.index_select(src, 0, read_idx, out=dst)
        return out, idx

    @torch.inference_mode()
    def write(self, rows: list[int], state: RetNetState, idx: torch.Tensor | None = None) -> None:
        """state's streams into `rows`; idx: those rows on the device already (from `gather`)."""
        idx = self._rows_on_device(rows)[0] if idx is None else idx
        for dst, src in zip(self.state.tensors().values(), state.tensors().values(), strict=True):
            dst.index_copy_(0, idx, src)
        if self._unwritten:
            self._unwritten.difference_update(rows)

    def _read_rows(self, rows: list[int]) -> list[int]:
        """The rows to read for `rows`: the zero row for a new stream's row not written yet (rows itself when
        there is none)."""
        if not self._unwritten or self._unwritten.isdisjoint(rows):
            return rows
        zero, unwritten = self._zero_row, self._unwritten
        return [zero if r in unwritten else r for r in rows]

    def _rows_on_device(self, *row_lists: list[int]) -> list[torch.Tensor]:
        """Row indices on the slab's device, one tensor per list; on a GPU through a reused pinned buffer
        (staging.py), copied without waiting for the device's queue, all in one upload."""
        device = self.state.positions.device
        if device.type != "cuda":
            return [torch.tensor(rows, dtype=torch.long) for rows in row_lists]
        slot = self._staging.take()
        idx = slot.upload([np.array(rows, dtype=np.int64) for rows in row_lists], device)
        slot.release()
        return idx

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        """A host tensor on the slab's device without waiting for the device's queue (a plain copy
        to a GPU synchronizes, and would stall the step loop behind the step that is running)."""
        device = self.state.positions.device
        if device.type != "cuda" or t.device == device:
            return t.to(device)
        return t.pin_memory().to(device, non_blocking=True)

    def _grow(self) -> None:
        """Double the rows, one tensor at a time so the peak is the new slab plus one old tensor. The old zero
        row becomes a free row (it holds zeros) and the new last row is the zero row."""
        old_n = self.n
        self.n = min(self.capacity, 2 * old_n)
        for i, old in enumerate(self.state.layers):
            self.state.layers[i] = _grown(old, self.n + 1)
        for name in ("positions", "pool_sum", "pool_count"):
            setattr(self.state, name, _grown(getattr(self.state, name), self.n + 1))
        self._free = list(range(self.n - 1, old_n - 1, -1))


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
            initial = model.init_state(1, device="cpu")
        self.state_bytes = initial.nbytes()
        self._zero_initial = not any(t.any() for t in initial.tensors().values())  # add_new may zero a row
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
        self._gathered: dict[tuple[str, ...], tuple[list[int], torch.Tensor]] = {}  # by a step's streams: rows, idx
        self.evicted: set[str] = set()  # streams this process moved to the durable tier and has not reloaded
        # evicted streams whose records the writer has not written yet: a use before then takes them back
        self.leaving: dict[str, tuple[Stream, RetNetState]] = {}
        # hands an evicted stream's record to the durable writer; it calls `evict_written` once written
        self.recorder: Callable[[Stream, RetNetState], Future] | None = None
        self.importing: set[str] = set()  # ids whose imported record is being written: not usable yet
        self.delete_epoch = 0  # +1 per record deleted: a record prefetched before then may be gone

    # ---- lookup

    def get(self, stream_id: str, prefetched: Prefetched | None = None) -> Stream | None:
        """The resident stream, or the durable one loaded into the host tier; None when it exists nowhere.

        prefetched: the record as `prefetch` read it before the lock; read again here when it may be stale."""
        stream = self.streams.get(stream_id)
        if stream is not None:
            return stream
        if stream_id in self.importing:
            raise TooBusy(f"stream {stream_id!r} is being imported; retry shortly")
        if self.durable is None:
            return None
        back = self.leaving.pop(stream_id, None)
        leaving = back is not None
        if not leaving:
            if prefetched is not None and self._fresh(prefetched):
                back = prefetched.decoded
            else:
                data = self.durable.read(stream_id)
                back = None if data is None else self.codec.decode(data, stream_id, origin="store")
            if back is None:
                return None
        try:
            self.add(*back)
        except BaseException:
            if leaving:  # no room: it stays on its way to the store
                self.leaving[stream_id] = back
            raise
        self.evicted.discard(stream_id)
        return back[0]

    def prefetch(self, stream_id: str) -> Prefetched | None:
        """Read and decode a stream's record without the engine lock, when it is in memory nowhere (a cold
        load then costs the lock no storage time). None when there is nothing to read, or the record cannot
        be decoded (`get` reads it again and raises the error where it always did)."""
        if self.durable is None or stream_id in self.streams or stream_id in self.leaving:
            return None
        epoch = self.delete_epoch
        try:
            data = self.durable.read(stream_id)
            decoded = None if data is None else self.codec.decode(data, stream_id, origin="store")
        except Exception:  # noqa: BLE001  (read again under the lock, which raises it to the caller)
            return None
        return Prefetched(stream_id, epoch, decoded)

    def _fresh(self, p: Prefetched) -> bool:
        if p.epoch != self.delete_epoch:
            return False
        return p.decoded is None or not self.durable.stale(p.stream_id, p.decoded[0].revision)

    def delete_record(self, stream_id: str) -> None:
        """Delete the stream's durable record (DurableWriteFailed when storage refuses)."""
        self.delete_epoch += 1
        self.durable.delete(stream_id)
        self.evicted.discard(stream_id)

    def tier(self, stream_id: str) -> str | None:
        if stream_id in self.device:
            return "device"
        if stream_id in self.host:
            return "host"
        if stream_id in self.leaving:
            return "durable"
        return "durable" if self.durable is not None and self.durable.exists(stream_id) else None

    def counts(self) -> dict[str, int]:
        return {"device": len(self.device), "host": len(self.host), "durable": len(self.evicted) + len(self.leaving)}

    def exists(self, stream_id: str) -> bool:
        """In memory, on its way to the durable store, or there."""
        return stream_id in self.streams or stream_id in self.leaving or stream_id in self.importing or (
            self.durable is not None and self.durable.exists(stream_id))

    # ---- residency

    def add_new(self, stream: Stream) -> None:
        """`add` of a new stream, in the model's initial state (on the device without a copy: DeviceSlab.put_new)."""
        if self._zero_initial and not self.device.full:
            self.device.put_new(stream.id)
            self.streams[stream.id] = stream
            return
        with torch.inference_mode():
            self.add(stream, self.model.init_state(1, device="cpu"))

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
        self.leaving.pop(stream_id, None)
        self.host.pop(stream_id, None)
        if stream_id in self.device:
            self.device.drop(stream_id)

    def read(self, stream_id: str) -> RetNetState:
        """A copy of a resident stream's state [1] (on whichever device it is)."""
        if stream_id in self.device:
            return self.device.read([self.device.row_of(stream_id)])
        self.host.move_to_end(stream_id)
        return self.host[stream_id].clone()

    def gather(self, stream_ids: list[str]) -> RetNetState:
        """States [N] of resident streams on the model's device, in order; pins them until scatter. On the CPU
        they are valid until the gather after the next (`DeviceSlab.gather`): scatter them before then."""
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
        state, idx = self.device.gather(rows)
        self._gathered[tuple(stream_ids)] = (rows, idx)
        return state

    def scatter(self, stream_ids: list[str], state: RetNetState) -> None:
        rows = [self.device.row_of(sid) for sid in stream_ids]
        # the rows gathered for these streams are on the device already (pinned streams keep their rows; the
        # check costs a list compare, an upload would cost a few torch calls of the step thread)
        gathered = self._gathered.pop(tuple(stream_ids), None)
        self.device.write(rows, state, gathered[1] if gathered is not None and gathered[0] == rows else None)
        self.pinned.difference_update(stream_ids)

    def unpin(self, stream_ids: list[str]) -> None:
        self._gathered.pop(tuple(stream_ids), None)
        self.pinned.difference_update(stream_ids)

    def evict(self, stream_id: str) -> Future | None:
        """Hand a resident idle stream's record to the durable writer and drop it from memory; it waits in
        `leaving` until written, and the returned future settles then (without a recorder it is written here,
        and None is returned)."""
        stream = self.streams[stream_id]
        state = self.read(stream_id).to("cpu")
        stream.recorded = True
        self.remove(stream_id)
        if self.recorder is None:
            self.durable.write(stream_id, stream.revision, self.codec.encode(stream, state))
            self.evicted.add(stream_id)
            return None
        self.leaving[stream_id] = (stream, state)
        return self.recorder(stream, state)

    def evict_written(self, stream: Stream, error: Exception | None) -> None:
        """The writer's answer for an eviction's record (engine lock held). A stream taken back meanwhile is
        resident again and owes nothing; one whose record failed comes back to the host tier, over its
        budget if need be, so that nothing is lost (it is spilled again later)."""
        entry = self.leaving.get(stream.id)
        if entry is None or entry[0] is not stream:
            return
        del self.leaving[stream.id]
        if error is None:
            self.evicted.add(stream.id)
            return
        log.error("evicting stream %r failed (%s): it stays in memory", stream.id, error)
        self.host[stream.id] = entry[1]
        self.streams[stream.id] = stream

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
