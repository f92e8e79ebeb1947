"""The durable writer: records are written on one background thread, so that steps never wait on storage."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .. import record
from .store import DurableStore


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

