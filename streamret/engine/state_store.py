"""Where stream states live: device (hot) -> host memory (warm) -> durable store (cold).

- Device tier: one preallocated-by-doubling slab of rows per state tensor, under a byte budget, so a
  step gathers and scatters its streams with one indexed copy per tensor.
- Host tier: per-stream CPU tensors under a byte budget; the least recently used device rows spill
  here, and the least recently used idle host streams are written to the durable store and dropped.
- Durable tier: one record per stream, in the durable store (durability/store.py).
A stream with work in flight or queued is never dropped to the durable tier.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

from ..errors import ResourceExhausted, TooBusy
from ..model.retnet import RetNet, RetNetState
from .durability.store import DurableStore
from .record import StreamCodec
from .staging import Staging
from .stream import Stream


class DeviceSlab:
    """Rows of per-stream state on the model's device; grows by doubling up to `capacity` rows."""

    def __init__(self, model: RetNet, capacity: int):
        self.model = model
        self.capacity = capacity
        with torch.inference_mode():
            self.state = model.init_state(min(capacity, 16))
        self.rows: OrderedDict[str, int] = OrderedDict()  # stream id -> row, least recently used first
        self._free = list(range(self.state.n - 1, -1, -1))
        # a gather and a scatter per step, two steps in flight: a slot comes round again only after the
        # step that used it last was waited for
        self._staging = Staging(slots=8)

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
        idx = self._rows_on_device(rows)
        return self.state.map(lambda x: x.index_select(0, idx))

    @torch.inference_mode()
    def write(self, rows: list[int], state: RetNetState) -> None:
        idx = self._rows_on_device(rows)
        for dst, src in zip(self.state.tensors().values(), state.tensors().values(), strict=True):
            dst.index_copy_(0, idx, src)

    def _rows_on_device(self, rows: list[int]) -> torch.Tensor:
        """Row indices on the slab's device; on a GPU through a reused pinned buffer (staging.py), copied
        without waiting for the device's queue."""
        device = self.state.positions.device
        if device.type != "cuda":
            return torch.tensor(rows, dtype=torch.long)
        slot = self._staging.take()
        idx = slot.upload([np.array(rows, dtype=np.int64)], device)[0]
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
