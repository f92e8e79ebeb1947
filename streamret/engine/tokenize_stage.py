"""Cutting and tokenizing accepted items on the engine's own threads, many items per tokenizer call.

`submit_append` only checks a chunk and accepts it (under the engine's lock), hands the item here and returns.
Here a thread takes the items waiting (up to a byte budget), cuts each one's text into tokenizer-safe pieces
from where its stream's text front stood (text.py: sentence cuts) and tokenizes all their pieces in one call
(`cut_and_encode`: one `encode_pieces` input per item), which a native tokenizer spreads over its own threads
without the GIL; with `procs` all of that runs in a process of the thread's own (tokenize_worker.py), and the
engine process only makes the pieces' objects and layouts. When each caller cut and tokenized its own chunk, a
single calling thread (the gRPC event loop, a batch reader, a bench driver) held the GIL for it while the
device idled (bench/RESULTS.md, "End to end on the H200", sessions 5 and 22).

A stream's text front is a chain: each item's text starts where the item accepted before it ends. So a stream's
items are cut by one thread at a time, in order (a thread passes over the items of a stream another thread is
cutting): an item's base is the front its stream stood at when it was accepted with no earlier item unapplied
(`WorkItem.text_before`), else where the item before it (`WorkItem.prev`) ends, known once that one is cut
(earlier in the same batch, or in one before). Two threads, so that one huge or slow batch does not hold up the
other streams' items; the engine queues a stream's items in order.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import chain

import numpy as np

from ..errors import InvalidArgument
from ..model.tokenizer import Tokenizer, encode_pieces
from .config import EngineConfig
from .histogram import power_of_two_bucket
from .scheduler import PieceLayout, WorkItem
from .text import TextAssembler, TextSnapshot, columns_of_rows
from .tokenize_worker import (
    Cut,
    TokenizerProcess,
    TokenizerProcessError,
    batch_reply,
    child_spec,
    cut_and_encode,
    split_reply,
)

log = logging.getLogger("streamret.engine")

THREAD_NAME = "streamret-engine-tokenize-{}"  # the stage's threads, by number (stack samples find thread 0 so)
# stats()' histogram of the items a cutting call holds: 1, 2, 3-4, 5-8, ..., 65-128, more (a call's fixed cost is
# about that of 2-3 chunks of 2 KB: bench/RESULTS.md, session 56, so how large the calls are says what to cut next)
CALL_ITEMS_BUCKETS = 8


@dataclass
class Tokenized:
    text_after: TextSnapshot  # the stream's text front after the item
    tokens: np.ndarray  # int64 [n]
    ends: np.ndarray  # int64 [pieces]: where each piece's tokens end
    layout: PieceLayout  # its pieces too (`layout.pieces`)


def requests_of(items: Sequence[WorkItem]) -> list[tuple]:
    """`cut_and_encode`'s requests for a batch of items, each one's base resolved (module doc): None when the item
    before it failed (it fails too)."""
    at = {id(item): k for k, item in enumerate(items)}
    return [(item.text_before if item.prev is None else at.get(id(item.prev), item.prev.text_after), item.raw,
             item.ending) for item in items]


def tokenize_items(cut: Callable[[list[tuple]], list[Cut | Exception]], vocab_size: int,
                   items: Sequence[WorkItem]) -> list[Tokenized | BaseException]:
    """Every item cut and tokenized by one call of cut (`cut_and_encode` here or in a tokenizer process), and the
    layouts of all their pieces made with array work (`PieceLayout.of_columns`); per item its result, or the error
    that fails it alone. Each item's text front after it is set on it at once (the next item of its stream starts
    there) and its link to the item before it let go."""
    try:
        results: list = cut(requests_of(items))
    except Exception as e:  # noqa: BLE001  (a tokenizer process that died twice: the batch fails, the thread goes on)
        results = [e] * len(items)
    ok = []
    for k, (item, r) in enumerate(zip(items, results, strict=True)):
        item.prev = None
        if not isinstance(r, BaseException):
            item.text_after = r.front
            ok.append(k)
    if not ok:
        return results
    try:
        lens = np.concatenate([results[k].lens for k in ok])
        columns = [results[k].columns for k in ok]
        layouts = PieceLayout.of_columns(
            list(chain.from_iterable(c[0] for c in columns)), np.concatenate([c[1] for c in columns]),
            np.concatenate([c[2] for c in columns]), np.array([len(c[0]) for c in columns], np.int64), lens)
    except Exception as e:  # noqa: BLE001  (a bug here fails the batch's items, not the thread)
        return [r if isinstance(r, BaseException) else e for r in results]
    every = np.concatenate([np.asarray(results[k].ids) for k in ok])  # one check of the batch's ids, not per item
    out_of_range = bool(len(every)) and (every.min() < 0 or every.max() >= vocab_size)
    for k, layout in zip(ok, layouts, strict=True):
        after, ids, lens, _ = results[k]
        if out_of_range and len(ids) and (ids.min() < 0 or ids.max() >= vocab_size):
            results[k] = InvalidArgument(
                f"the tokenizer produced ids outside the model's vocabulary [0, {vocab_size}); "
                "the engine's tokenizer and model do not belong together")
        else:  # a copy of the batch's ids, which an item left queued would hold
            results[k] = Tokenized(after, np.array(ids, dtype=np.int64), np.cumsum(lens), layout)
    return results


Deliver = Callable[[list[tuple[WorkItem, Tokenized | BaseException]]], None]


@dataclass
class _Group:
    """Batches cut from one burst of waiting chunks by threads that were idle together (`split_bursts`), delivered
    in one call once the last is done: a step then holds all their streams, not the first finisher's alone."""

    pending: int = 1  # batches of the group still being cut
    results: list = field(default_factory=list)


class StageClosed(RuntimeError):
    """Items handed to a tokenize stage that was closed (the engine shut down after accepting them)."""


class TokenizeStage:
    """Threads that cut and tokenize submitted items in batches, a stream's items on one thread at a time and in
    order, and hand each batch's results to `deliver` (called on a stage thread, never with the stage's lock
    held)."""

    def __init__(self, tokenizer: Tokenizer, vocab_size: int, deliver: Deliver, text_params: dict, threads: int = 2,
                 max_batch_bytes: int = EngineConfig.tokenize_batch_bytes, min_batch_bytes: int = 8 << 10,
                 on_error: Callable[[BaseException], None] | None = None, procs: bool = False,
                 join_bytes: int = 0, join_wait_s: float = EngineConfig.tokenize_join_wait_s,
                 hungry: Callable[[], bool] | None = None, split_bursts: bool = EngineConfig.tokenize_split_bursts):
        """text_params: the text front's settings (`StreamCodec.text_params`). What waits is split between the
        threads that wait for work (a batch is at least min_batch_bytes, at most max_batch_bytes): the batches then
        run at once instead of one after the other (on an H200 host the tokenize threads take most of an engine's
        CPU, and with few streams a chunk's wait for them is part of every round trip: bench/RESULTS.md, "End to
        end on the H200, session 5"). A thread passes over the items of a stream that another thread is cutting
        (its next item starts where those end), so one slow or huge chunk holds up its own stream only. procs:
        each thread hands its batches to a tokenizer process of its own (tokenize_worker.py) and waits without the
        GIL; a tokenizer that a child cannot rebuild, or a child that cannot start, is run in this process.
        join_bytes: while another thread is cutting, a thread takes waiting chunks only once at least this many
        bytes of them wait (0: at once). Chunks that trickle in one at a time (a few streams, each sending its
        next chunk as one is acked) then gather behind the busy thread into one batch instead of going one by
        one to the idle thread, and the steps they make hold more streams (with one thread an engine on the H200
        at 64 streams: 5.2 streams a step instead of 2.1, half the step thread's CPU a token, +4-32% tokens/s in
        six pairs of runs: bench/RESULTS.md, sessions 24, 25; with two threads and 32 KiB, 4.6-4.8 streams a step
        instead of 2.3, +14-24% in two pairs: session 26). A thread that would leave the others too little
        to join on takes all that waits instead of its share. join_wait_s: how long a chunk waits for the busy
        thread at most (from its acceptance) before an idle thread takes it anyway, so that one slow or huge
        batch does not hold up other streams' chunks (at about 1 us a token on a GPU host, a trickle's batch of a
        few 2 KB chunks takes a few ms, about the default's 3; a 1 MiB batch a few hundred). hungry: whether what
        the stage delivers to waits for work now (the engine's step loop, idle): then gathering would only delay
        the next step, and an idle thread takes waiting chunks at once (`wake` makes it look again).
        split_bursts: where a thread would take it all (what it leaves would make no other join), it takes its share
        and the idle threads take the rest at once, each its share (the last all that is left), and the batches are
        delivered together when the last is done: meant to cut a burst in a fraction of the time (half with two
        threads) and still make one step of it (`_Group`). On by default (EngineConfig.tokenize_split_bursts says
        what the H200 read).
        Whatever the split, a batch takes all the waiting items of each stream it takes (up to max_batch_bytes,
        `_batch`)."""
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.tokenizer, self.vocab_size, self.deliver = tokenizer, vocab_size, deliver
        self.text_params = dict(text_params)
        self.spec = child_spec(tokenizer) if procs else None
        if procs and self.spec is None:
            log.warning("tokenize_procs: a %s cannot be rebuilt in a tokenizer process; tokenizing in the engine "
                        "process", type(tokenizer).__name__)
        if join_bytes < 0:
            raise ValueError(f"join_bytes must be >= 0 (0: an idle thread takes waiting chunks at once), got "
                             f"{join_bytes}")
        if join_wait_s < 0:
            raise ValueError(f"join_wait_s must be >= 0, got {join_wait_s}")
        self.max_batch_bytes, self.min_batch_bytes, self.join_bytes = max_batch_bytes, min_batch_bytes, join_bytes
        self.join_wait_s, self.hungry, self.split_bursts = join_wait_s, hungry, split_bursts
        self._handoff: _Group | None = None  # a split burst whose rest the idle threads are to take at once
        self.on_error = on_error  # a failing `deliver` is an engine bug: the engine decides what then
        self._queue: deque[WorkItem] = deque()
        self._busy: set[str] = set()  # streams whose items a thread is cutting now
        self._idle = 0  # threads waiting for work
        self._cutting = 0  # threads holding a batch (from `_take` to `_done`)
        self._cv = threading.Condition()
        self._closing = False
        # the cutting calls (a batch each: one tokenizer process call with `procs`), their items and bytes (`stats`)
        self._calls = self._call_items = self._call_bytes = 0
        self._call_items_buckets = [0] * (CALL_ITEMS_BUCKETS + 1)
        self.threads = [threading.Thread(target=self._run, name=THREAD_NAME.format(i), daemon=True)
                         for i in range(threads)]
        for t in self.threads:
            t.start()

    def submit_many(self, items: Sequence[WorkItem]) -> None:
        """Queue items, in order, with one take of the stage's lock (called after the engine lock is let go)."""
        with self._cv:
            if self._closing:
                raise StageClosed("the tokenize stage is closed")
            self._queue.extend(items)
            self._cv.notify()

    def idle(self) -> bool:
        """Whether no accepted chunk waits to be cut or is being cut (read without the lock: a hint that may be a
        moment old)."""
        return not self._queue and not self._cutting

    def stats(self) -> dict:
        """Counters of the cutting calls so far: calls, their items and bytes in all, and a histogram of the items a
        call (`CALL_ITEMS_BUCKETS`)."""
        with self._cv:
            return {"tokenize_calls": self._calls, "tokenize_call_items": self._call_items,
                    "tokenize_call_bytes": self._call_bytes,
                    "tokenize_call_items_buckets": list(self._call_items_buckets)}

    def wake(self) -> None:
        """Have a waiting thread look at the queue again (`hungry` may say yes now)."""
        with self._cv:
            self._cv.notify()

    def close(self) -> None:
        """Cut and tokenize what is queued, then end the threads."""
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        for t in self.threads:
            if t is not threading.current_thread():
                t.join()

    def _take(self) -> tuple[list[WorkItem], _Group | None]:
        """The items waiting whose streams no other thread is cutting, oldest first, this thread's share of them
        (at least one), and the group its batch is delivered with (`split_bursts`; None: alone); the items' streams
        are then this thread's until `_done`. ([], None) once closed and empty."""
        with self._cv:
            self._idle += 1
            while True:
                free = [item for item in self._queue if item.stream_id not in self._busy]
                total = sum(item.nbytes for item in free)
                wait = self._join_wait(free, total) if free else None
                if wait:
                    free = []  # few enough, and recent enough, to wait for the thread that is cutting
                if free or (self._closing and not self._queue):
                    break
                self._cv.wait(wait)
            self._idle -= 1
            group = None
            share = -(-total // (self._idle + 1))  # with the threads still waiting ...
            if free and self._handoff is not None:  # a burst another thread split: this thread's share of the rest
                group = self._handoff
                group.pending += 1
                if not self._idle or total - share < self.min_batch_bytes:
                    self._handoff, share = None, total  # the last to take part: all of it
            elif self.join_bytes and total - share < self.join_bytes:
                if self.split_bursts and self._idle and total - share >= self.min_batch_bytes:
                    group = self._handoff = _Group()  # ... and the idle ones take the rest at once
                else:
                    share = total  # ... unless what it leaves would not make one of them join: then it all
            batch = self._batch(free, min(self.max_batch_bytes, max(self.min_batch_bytes, share)))
            if batch:
                taken = set(map(id, batch))
                self._queue = deque(item for item in self._queue if id(item) not in taken)
                self._busy.update(item.stream_id for item in batch)
                self._cutting += 1
            if self._handoff is not None and all(item.stream_id in self._busy for item in self._queue):
                # nothing of the burst is left for the idle threads (a batch takes each of its streams whole): a
                # later chunk is not part of it, and is taken by the join's rules instead
                self._handoff = None
            if self._queue:
                self._cv.notify()  # more may wait: another thread may take what is left
            return batch, group

    def _batch(self, free: list[WorkItem], limit: int) -> list[WorkItem]:
        """The oldest free items up to limit bytes (at least one), and with each stream taken all its free items up
        to max_batch_bytes: no other thread could cut a stream's later items while this one holds the stream, so
        left behind they would wait for this batch to end and go out in a later one."""
        batch, size, taken, passed = [], 0, set(), set()
        for item in free:
            sid = item.stream_id
            fits = not batch or size + item.nbytes <= limit
            if sid in passed or not (fits or (sid in taken and size + item.nbytes <= self.max_batch_bytes)):
                passed.add(sid)  # (and its later items too: a stream's items are cut in order)
                continue
            batch.append(item)
            size += item.nbytes
            taken.add(sid)
        return batch

    def _join_wait(self, free: list[WorkItem], total: int) -> float:
        """Seconds a waiting thread leaves the free items (total bytes) for the thread that is cutting (lock held);
        0: it takes them now, as no other thread is cutting, enough bytes wait (`join_bytes`), the oldest has waited
        `join_wait_s` already, the consumer waits for work (`hungry`), a thread split a burst for the idle ones to take
        the rest (`split_bursts`), or the stage is closing."""
        if (not self._cutting or self._closing or not self.join_bytes or self._handoff is not None
                or (self.hungry is not None and self.hungry())):
            return 0.0
        if total >= self.join_bytes:
            return 0.0
        return max(0.0, min(item.accepted_at for item in free) + self.join_wait_s - time.monotonic())

    def _done(self, batch: list[WorkItem], group: _Group | None, results: list) -> list | None:
        """The batch's streams are free for any thread again (their items' text fronts are set); what to deliver
        now: its results, or with a group all of the group's once its last batch is done (None before)."""
        with self._cv:
            self._busy.difference_update(item.stream_id for item in batch)
            self._cutting -= 1
            self._calls += 1
            self._call_items += len(batch)
            self._call_bytes += sum(item.nbytes for item in batch)
            self._call_items_buckets[power_of_two_bucket(len(batch), CALL_ITEMS_BUCKETS)] += 1
            self._cv.notify_all()
            if group is None:
                return results
            group.results += results
            group.pending -= 1
            if group.pending:
                return None
            if self._handoff is group:  # no thread took the rest in time: it goes alone, as any batch
                self._handoff = None
            return group.results

    def _run(self) -> None:
        proc = self._own_process()
        cut = proc.cut_and_encode if proc is not None else in_process_cut(self.tokenizer, self.text_params)
        try:
            while True:
                batch, group = self._take()
                if not batch:
                    break
                # (what its items get should the call itself be interrupted: its group must still go out)
                results: list = [StageClosed("the tokenize thread stopped while cutting this chunk")] * len(batch)
                began = time.monotonic()
                try:
                    results = tokenize_items(cut, self.vocab_size, batch)
                finally:
                    ended = time.monotonic()
                    for item in batch:  # (where an item's time in the stage goes: EngineCore.stats' recent_items)
                        item.cutting_at, item.cut_at = began, ended
                    ready = self._done(batch, group, list(zip(batch, results, strict=True)))
                if ready is None:
                    continue  # another batch of its group delivers it
                try:
                    self.deliver(ready)
                except BaseException as e:  # noqa: BLE001
                    if self.on_error is None:
                        raise
                    self.on_error(e)
        finally:
            if proc is not None:
                proc.close()

    def _own_process(self) -> TokenizerProcess | None:
        """This thread's tokenizer process with `procs`; None without, or when it cannot start (the thread then
        cuts and tokenizes in this process)."""
        if self.spec is None:
            return None
        try:
            return TokenizerProcess(self.spec, self.text_params)
        except TokenizerProcessError as e:
            log.warning("tokenize_procs: %s; tokenizing in the engine process", e)
            return None


def in_process_cut(tokenizer: Tokenizer, text_params: dict) -> Callable[[list[tuple]], list[Cut | Exception]]:
    """`cut_and_encode` in this process, with text fronts of text_params (`StreamCodec.text_params`): the `Cut`s a
    tokenizer process gives (`split_reply` of `batch_reply`), each error as it was raised."""

    def new_assembler(base: TextSnapshot) -> TextAssembler:
        return TextAssembler(snapshot=base, **text_params)

    def encode(items: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        return encode_pieces(tokenizer, items)

    def cut(requests: list[tuple]) -> list[Cut | Exception]:
        results = cut_and_encode(new_assembler, encode, requests)
        cuts = split_reply(batch_reply(columns_of_rows, results))
        return [r if isinstance(r, Exception) else c for r, c in zip(results, cuts, strict=True)]

    return cut
