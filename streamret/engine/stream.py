"""One stream's bookkeeping: sequence numbers, text, segments. Its tensors live in the state store.

Two sides, kept apart so that a checkpoint never mixes them:
- the *front* (accepted_seq, `pending`) runs ahead as chunks are accepted and tokenized (its text: where the
  last pending item's ends, tokenize_stage.py);
- the *applied* side (applied_seq, applied_text, segments, tokens) moves when a step applies them.
A durable record holds only the applied side, so a restored stream continues exactly where its
saved state ends.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .config import Ack
from .scheduler import WorkItem
from .segments import SegmentTracker
from .text import TextSnapshot


@dataclass(eq=False)
class Stream:
    id: str
    segments: SegmentTracker
    applied_text: TextSnapshot = field(default_factory=lambda: TextSnapshot(b"", 0))
    applied_seq: int = 0
    durable_seq: int = 0
    tokens: int = 0
    revision: int = 0  # +1 per applied item; the durable store keeps the newest revision
    accepted_seq: int = 0
    pending: deque[WorkItem] = field(default_factory=deque)  # accepted, not yet applied or failed
    since_durable: int = 0  # items applied since the last durable record
    durable_time: float = field(default_factory=time.monotonic)
    group: str = ""  # the scheduler's fairness group (e.g. the tenant); not part of the durable record
    # tokens of the oldest pending item already run into the state (a chunk split across steps): while
    # it is > 0 the state is past applied_seq, and no record may be written from it
    partial_tokens: int = 0
    owed_record: list = field(default_factory=list)  # ack waiters of a record asked for while partial_tokens > 0
    # A batch temporary (a row of EmbedTable, a text of encode): closed within the call, so the durability
    # policy, the time sweep and shutdown never write it; only a chunk asking for a record (or an eviction) does.
    ephemeral: bool = False
    recorded: bool = False  # a record of it was handed to the durable store: closing must delete it
    # the stream embedding of its state as the last step left it (float32 [embed_dim], booked with the step);
    # None until a step ran it (a new, imported or loaded stream): then computed from the state. A step is the
    # only change to a Stream's state (import and load make new Stream objects), so it is never stale, and
    # queries need not read the device, which would wait for the step running there under the engine's lock.
    embedding: np.ndarray | None = None

    @property
    def at_boundary(self) -> bool:
        """The state holds exactly the chunks up to applied_seq (a record written now is consistent)."""
        return self.partial_tokens == 0

    @property
    def busy(self) -> bool:
        return bool(self.pending)

    def ack(self, seq: int | None) -> Ack:
        """The ack of chunk `seq` (None: a flush) as the stream stands now."""
        return Ack(self.id, self.applied_seq if seq is None else seq, self.applied_seq, self.durable_seq, self.tokens)

    def apply(self, item: WorkItem) -> None:
        """Book an item whose tokens have all been run."""
        if item.seq is not None:
            self.applied_seq = item.seq
        self.applied_text = item.text_after
        self.tokens += item.n_tokens
        self.partial_tokens = 0
        self.revision += 1
        self.since_durable += 1
        self.pending.popleft()

    def rewind(self) -> list[WorkItem]:
        """Drop every unapplied item (after a failure): the front goes back to the applied side."""
        dropped = list(self.pending)
        self.pending.clear()
        self.accepted_seq = self.applied_seq
        return dropped
