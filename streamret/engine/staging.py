"""Pinned host buffers that a step's inputs and outputs pass through, reused from step to step.

Pinning memory per step (`Tensor.pin_memory()` for each small index array) cost the step thread about
8% of its time on an H200. Here each step packs all its inputs into one pinned buffer and sends them with
one copy to the device, and its outputs come back with one copy into another; the buffers grow by
doubling and are reused. Two steps are in flight at a time (the loop launches step k+1 before it books
step k), so the buffers rotate over `slots` slots, and a slot is taken again only once the copies of the
step that used it last are done (`Slot.release` records when).

A wait for those copies spins by default, as CUDA's own waits do; `blocking=True` makes it sleep on a
blocking CUDA event instead, leaving the core to other threads (EngineConfig.device_wait).
"""

from __future__ import annotations

import numpy as np
import torch

_ALIGN = 16  # bytes: every array starts at a multiple, so a typed view of the device buffer is aligned


def _aligned(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


class Slot:
    """One step's pinned input and output buffers."""

    def __init__(self, blocking: bool = False) -> None:
        self.blocking = blocking  # waits on `done` sleep (True) or spin a core (False)
        self.inputs = torch.empty(0, dtype=torch.uint8)
        self.outputs = torch.empty(0, dtype=torch.uint8)
        self.done: torch.cuda.Event | None = None  # recorded after the step's last copy was queued

    def upload(self, arrays: list[np.ndarray], device: torch.device) -> list[torch.Tensor]:
        """The arrays on the device, through this slot's pinned input buffer and one copy (queued)."""
        sizes = [_aligned(a.nbytes) for a in arrays]
        self.inputs = _fit(self.inputs, sum(sizes))
        host = self.inputs.numpy()
        offsets = np.concatenate([[0], np.cumsum(sizes)]).tolist()
        for a, at in zip(arrays, offsets):
            host[at : at + a.nbytes] = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
        dev = self.inputs[: offsets[-1]].to(device, non_blocking=True)
        # one split for all (each array, then its padding), then a typed view each: few torch calls, since each
        # may wait for the GIL (bench/RESULTS.md, "End to end on the H200, session 12")
        pieces = dev.split([n for a, size in zip(arrays, sizes) for n in (a.nbytes, size - a.nbytes)])[::2]
        return [_typed(p, a) for p, a in zip(pieces, arrays)]

    def download(self, tensors: tuple[torch.Tensor, ...]) -> list[np.ndarray]:
        """Queue one copy of the tensors (on the device) into this slot's pinned output buffer; returns numpy
        views of their places there, valid once the copy is done (`release`, then wait on `done`)."""
        packed = torch.cat([t.reshape(-1).view(torch.uint8) for t in tensors])
        self.outputs = _fit(self.outputs, packed.numel())
        self.outputs[: packed.numel()].copy_(packed, non_blocking=True)
        host = self.outputs.numpy()
        out, at = [], 0
        for t in tensors:
            dtype = np.dtype(str(t.dtype).removeprefix("torch."))
            n = t.numel() * dtype.itemsize
            out.append(host[at : at + n].view(dtype).reshape(tuple(t.shape)))
            at += n
        return out

    def release(self) -> torch.cuda.Event:
        """Record that the step's copies are queued: the slot is free again once this event completes. The slot's
        one event is recorded again at each use (a torch call less than a new event): a wait on it must come
        before the slot's next `take`, as the engine's wait for step k comes before step k + 2 takes the slot."""
        if self.done is None:
            self.done = torch.cuda.Event(blocking=self.blocking)
        self.done.record()
        return self.done


class Staging:
    """The slots, taken in turn. blocking: whether waits for a slot's copies sleep (else they spin)."""

    def __init__(self, slots: int = 2, blocking: bool = False):
        self.slots = [Slot(blocking) for _ in range(slots)]
        self._next = 0

    def take(self) -> Slot:
        slot = self.slots[self._next]
        self._next = (self._next + 1) % len(self.slots)
        if slot.done is not None:
            slot.done.synchronize()  # its step was booked already: at most a wait for nothing
        return slot


def _fit(buffer: torch.Tensor, nbytes: int) -> torch.Tensor:
    """buffer when it holds nbytes, else a pinned one twice as large as needed."""
    return buffer if buffer.numel() >= nbytes else torch.empty(2 * nbytes, dtype=torch.uint8, pin_memory=True)


_TORCH_DTYPES: dict[np.dtype, torch.dtype] = {}  # filled as dtypes are met: one torch call per dtype, ever


def _typed(raw: torch.Tensor, like: np.ndarray) -> torch.Tensor:
    """raw bytes on the device viewed as `like`'s dtype and shape."""
    dtype = _TORCH_DTYPES.get(like.dtype)
    if dtype is None:
        dtype = _TORCH_DTYPES[like.dtype] = torch.from_numpy(np.zeros(0, like.dtype)).dtype
    t = raw.view(dtype)
    return t if like.ndim == 1 else t.view(like.shape)
