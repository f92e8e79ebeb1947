"""Tokenizing accepted items on the engine's own threads, many items per tokenizer call.

`submit_append` only checks a chunk and cuts it into pieces (under the engine's lock), hands the
item here and returns. When each caller tokenized its own chunk, a single calling thread (the gRPC
event loop, a batch reader, a bench driver) fed the engine one chunk per tokenizer call, with the
GIL changing hands around each: on an H200 that capped the default model at a tenth of its packed
forward while the device idled. Here a thread takes every item waiting (up to a byte budget) and
tokenizes all their pieces in one call (`encode_pieces`: one `encode_batch`, an input per item), which
a native tokenizer spreads over its own threads without the GIL. Two threads, so that one huge or slow
batch does not hold up the items that arrive behind it; the engine queues a stream's items in order
whichever thread finishes first.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidArgument
from ..model.tokenizer import Tokenizer, encode_pieces
from .scheduler import PieceLayout, WorkItem
from .tokenize_worker import TokenizerProcess, TokenizerProcessError, child_spec

log = logging.getLogger("streamret.engine")


@dataclass
class Tokenized:
    tokens: np.ndarray  # int64 [n]
    ends: np.ndarray  # int64 [pieces]: where each piece's tokens end
    layout: PieceLayout


def tokenize_items(tokenizer: Tokenizer, vocab_size: int, items: Sequence[WorkItem]) -> list[Tokenized | BaseException]:
    """Every item's pieces in one tokenizer call (`encode_pieces`), and their layouts with array work over
    all of them (`PieceLayout.of_items`); per item its tokens, or the error that fails it alone (a failing
    batch is retried item by item, so that one bad item does not fail its neighbours)."""
    try:
        ids, ends = _encode(tokenizer, items)
        layouts = PieceLayout.of_items([item.pieces for item in items], np.diff(ends, prepend=0))
    except Exception as e:  # noqa: BLE001  (handed to the item's future; in a batch, each item retried alone)
        if len(items) == 1:
            return [e]
        return [tokenize_items(tokenizer, vocab_size, [item])[0] for item in items]
    first_piece = np.cumsum([0] + [len(item.pieces) for item in items])
    bounds = np.concatenate([[0], ends])[first_piece].tolist()  # where each item's tokens start and end
    out: list[Tokenized | BaseException] = [  # copies of the batch's ids, which an item left queued would hold
        Tokenized(ids[a:b].copy(), np.cumsum(layout.lens), layout) for a, b, layout in zip(bounds, bounds[1:], layouts)]
    bad = np.flatnonzero((ids < 0) | (ids >= vocab_size))
    for k in np.unique(np.searchsorted(bounds, bad, side="right") - 1).tolist():
        out[k] = InvalidArgument(
            f"the tokenizer produced ids outside the model's vocabulary [0, {vocab_size}); "
            "the engine's tokenizer and model do not belong together"
        )
    return out


def _encode(tokenizer: Tokenizer, items: Sequence[WorkItem]) -> tuple[np.ndarray, np.ndarray]:
    """`encode_pieces` of the items' pieces, checked: one end per piece, the last at the number of ids."""
    ids, ends = encode_pieces(tokenizer, [[p.text for p in item.pieces] for item in items])
    n_pieces = sum(len(item.pieces) for item in items)
    if len(ends) != n_pieces or (ends[-1] if n_pieces else 0) != len(ids):
        raise ValueError(f"the tokenizer's encode_pieces gave {len(ends)} piece ends (the last at "
                         f"{ends[-1] if len(ends) else None}) for {n_pieces} pieces of {len(ids)} ids; "
                         "it must give one end per piece, the last at the number of ids")
    return ids, ends


Deliver = Callable[[list[tuple[WorkItem, Tokenized | BaseException]]], None]


class StageClosed(RuntimeError):
    """Items handed to a tokenize stage that was closed (the engine shut down after accepting them)."""


class TokenizeStage:
    """Threads that tokenize submitted items in batches and hand each batch's results to `deliver`
    (called on a stage thread, never with the stage's lock held)."""

    def __init__(self, tokenizer: Tokenizer, vocab_size: int, deliver: Deliver, threads: int = 2,
                 max_batch_bytes: int = 1 << 20, min_batch_bytes: int = 8 << 10,
                 on_error: Callable[[BaseException], None] | None = None, procs: bool = False):
        """What waits is split between the threads that wait for work (a batch is at least min_batch_bytes,
        at most max_batch_bytes): the batches then run at once instead of one after the other (on an H200
        host the tokenize threads take most of an engine's CPU, and with few streams a chunk's wait for them is
        part of every round trip: bench/RESULTS.md, "End to end on the H200, session 5"). procs: each thread
        hands its batches to a tokenizer process of its own (tokenize_worker.py) and waits without the GIL;
        a tokenizer that a child cannot rebuild, or a child that cannot start, is run in this process."""
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.tokenizer, self.vocab_size, self.deliver = tokenizer, vocab_size, deliver
        self.spec = child_spec(tokenizer) if procs else None
        if procs and self.spec is None:
            log.warning("tokenize_procs: a %s cannot be rebuilt in a tokenizer process; tokenizing in the engine "
                        "process", type(tokenizer).__name__)
        self.max_batch_bytes, self.min_batch_bytes = max_batch_bytes, min_batch_bytes
        self.on_error = on_error  # a failing `deliver` is an engine bug: the engine decides what then
        self._queue: deque[WorkItem] = deque()
        self._queued_bytes = 0
        self._idle = 0  # threads waiting for work
        self._cv = threading.Condition()
        self._closing = False
        self._threads = [threading.Thread(target=self._run, name=f"streamret-engine-tokenize-{i}", daemon=True)
                         for i in range(threads)]
        for t in self._threads:
            t.start()

    def submit_many(self, items: Sequence[WorkItem]) -> None:
        """Queue items, in order, with one take of the stage's lock (called after the engine lock is let go)."""
        with self._cv:
            if self._closing:
                raise StageClosed("the tokenize stage is closed")
            self._queue.extend(items)
            self._queued_bytes += sum(item.nbytes for item in items)
            self._cv.notify()

    def close(self) -> None:
        """Tokenize what is queued, then end the threads."""
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join()

    def _take(self) -> list[WorkItem]:
        """The items waiting, oldest first, this thread's share of them (at least one); [] once closed and
        empty."""
        with self._cv:
            self._idle += 1
            while not self._queue and not self._closing:
                self._cv.wait()
            self._idle -= 1
            share = -(-self._queued_bytes // (self._idle + 1))  # with the threads still waiting
            limit = min(self.max_batch_bytes, max(self.min_batch_bytes, share))
            batch, size = [], 0
            while self._queue and (not batch or size + self._queue[0].nbytes <= limit):
                item = self._queue.popleft()
                batch.append(item)
                size += item.nbytes
            self._queued_bytes -= size
            if self._queue:
                self._cv.notify()  # more than one batch waits: wake another thread for the rest
            return batch

    def _run(self) -> None:
        tokenizer = self._own_tokenizer()
        try:
            while batch := self._take():
                results = tokenize_items(tokenizer, self.vocab_size, batch)
                try:
                    self.deliver(list(zip(batch, results, strict=True)))
                except BaseException as e:  # noqa: BLE001
                    if self.on_error is None:
                        raise
                    self.on_error(e)
        finally:
            if isinstance(tokenizer, TokenizerProcess):
                tokenizer.close()

    def _own_tokenizer(self) -> Tokenizer | TokenizerProcess:
        """This thread's tokenizer: a process of its own with `procs`, else (or when it cannot start) the
        engine's."""
        if self.spec is None:
            return self.tokenizer
        try:
            return TokenizerProcess(self.spec)
        except TokenizerProcessError as e:
            log.warning("tokenize_procs: %s; tokenizing in the engine process", e)
            return self.tokenizer
