"""The kept segments of many streams in one set of arrays, a slot per stream.

A step keeps the segments that tens of streams closed; with each stream's rows in arrays of its own that
is a few numpy calls per stream (the step thread's largest host cost at 1,024 streams on the H200). With
every stream's rows in one array per field (`keep_segments`, segments.py), it is a few calls per step:
a gather of the streams' slots, one product, one sort, one scatter.

The arrays grow by doubling, like the state store's device slab, and do not shrink: they hold up to the
most streams that kept segments at one time (a stream's slot is about 100 KB with the default model: 64 rows of
384 float32). A grown array's pages are committed as rows are written, so growing costs the rows in use plus,
for a moment, the old arrays' copy. A slot goes back to the free list when its tracker is
garbage-collected. Writers hold `lock` (a step's booking under the engine lock and a record decoded by a
loader thread both write here); readers read a tracker's rows under the engine lock, which serialises
them with every writer of that tracker.
"""

from __future__ import annotations

import threading
import weakref

import numpy as np


class KeptPool:
    """Rows [slot, :count[slot]] of each array are a stream's kept segments, in no particular order."""

    def __init__(self, max_kept: int):
        if max_kept < 1:
            raise ValueError(f"max_kept={max_kept}: a stream keeps at least one segment")
        self.max_kept = max_kept
        # a stream whose kept segments a new one would take past max_kept keeps its keep_to most relevant (of those
        # and the new one), so that it is ranked once every few segments, not at every one
        self.keep_to = max_kept - max_kept // 4
        self.lock = threading.Lock()
        self.embed_dim = 0  # set by the first slot taken
        self.embeddings = np.zeros((0, max_kept, 0), np.float32)
        self.penalty = np.zeros((0, max_kept), np.float64)  # `short_penalties` of each kept text
        self.byte_spans = np.zeros((0, max_kept, 2), np.int64)  # [start, end) stream bytes
        self.count = np.zeros(0, np.int64)
        self.texts: list[list[str]] = []
        self._free: list[int] = []

    @property
    def capacity(self) -> int:
        return len(self.count)

    def take(self, owner: object, embed_dim: int) -> int:
        """A free slot for `owner`'s segments (lock held), given back when owner is garbage-collected."""
        if self.embed_dim == 0:
            self.embed_dim = embed_dim
            self.embeddings = np.zeros((0, self.max_kept, embed_dim), np.float32)
        elif embed_dim != self.embed_dim:
            raise ValueError(f"segment embeddings of width {embed_dim} for a pool of width {self.embed_dim}: "
                             "one pool holds the segments of one model")
        if not self._free:
            self._grow(max(8, 2 * self.capacity))
        slot = self._free.pop()
        self.count[slot] = 0
        self.texts[slot] = []
        weakref.finalize(owner, self._release, slot)
        return slot

    def _release(self, slot: int) -> None:
        """Run by the garbage collector in any thread, maybe inside a writer's lock: no lock here (an item
        assignment and a list append are atomic under the GIL; `take` resets the count)."""
        self.texts[slot] = []
        self._free.append(slot)

    def _grow(self, capacity: int) -> None:
        old = self.capacity
        for name in ("embeddings", "penalty", "byte_spans", "count"):
            a = getattr(self, name)
            grown = np.zeros((capacity, *a.shape[1:]), a.dtype)
            grown[:old] = a
            setattr(self, name, grown)
        self.texts += [[] for _ in range(capacity - old)]
        self._free += range(capacity - 1, old - 1, -1)  # pop() takes the lowest first
