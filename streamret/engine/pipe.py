"""The message pipe between this process and an engine process: what each end sends on it, batched.

Both ends use it: `ShardedEngine`'s `_Shard` for the calls it sends, an engine process (engine_process.py) for
its answers, a front process (attach.py) for both. An outbox sends on a thread of its own (or on a
`SharedSender` that serves many), so a caller never blocks on a full pipe or pays for pickling.
"""

from __future__ import annotations

import logging
import pickle
import queue
import threading
import time
from collections import deque
from multiprocessing.reduction import ForkingPickler

log = logging.getLogger("streamret.engine")


_CLOSE = object()  # an outbox's last message: send what came before, then stop


class Outbox:
    """Messages to one end of a pipe, sent by a thread of their own in batches: a caller never blocks on a
    full pipe or pays for pickling, and a step's many acks cross in one message. A put is one append to a
    SimpleQueue (C code, no Python lock or condition): it is paid per chunk by the server's event loop and by
    an engine's step loop. A put is a message (a tuple) or a list of messages (the calls a _Shard held).

    sender: send on that shared thread instead of one of this outbox's own (STREAMRET_ENGINE_READER=shared_send)."""

    def __init__(self, conn, name: str, on_error=None, sent_at: deque | None = None,
                 sender: SharedSender | None = None) -> None:
        # sent_at: where (stream id, seq, time.monotonic) of each submit_append goes as its message is written
        self.conn, self.on_error, self.sent_at = conn, on_error, sent_at
        self._done = threading.Event()  # nothing more is sent: closed, or the other end is gone
        if sender is not None:
            put = sender.put
            self.put = lambda item: put((self, item))
            return
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self.put = self._queue.put
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def close(self) -> None:
        """Send what is queued, then stop."""
        self.put(_CLOSE)
        self._done.wait(timeout=30)

    def _run(self) -> None:
        get, waiting = self._queue.get, self._queue.qsize
        try:
            while True:
                batch = []
                for item in [get(), *(get() for _ in range(waiting()))]:  # what came meanwhile: the same message
                    batch.extend(item) if type(item) is list else batch.append(item)
                if not self.send(batch):
                    return
        finally:  # (a close never waits for a thread that is gone)
            self._done.set()

    def send(self, batch: list) -> bool:
        """Write these messages as one (those before a _CLOSE among them); False once nothing more is to be sent
        (closed, or the other end is gone): later messages are dropped."""
        if self._done.is_set():
            return False
        if _CLOSE in batch:  # (identity first: messages are tuples, never equal to it)
            batch = batch[:batch.index(_CLOSE)]
            if batch:
                self._write(batch)
            self._done.set()
            return False
        if not self._write(batch):
            self._done.set()
            return False
        return True

    def _write(self, batch: list) -> bool:
        """False when the other end is gone (or this one closed)."""
        try:
            data = ForkingPickler.dumps(batch)
        except Exception:  # noqa: BLE001  (a message that does not pickle fails alone, the rest go)
            good = []
            for message in batch:
                try:
                    ForkingPickler.dumps(message)
                except Exception as e:  # noqa: BLE001
                    if self.on_error is not None:
                        self.on_error([message], e, False)
                else:
                    good.append(message)
            if not good:
                return True
            batch, data = good, ForkingPickler.dumps(good)
        if self.sent_at is not None:  # stamped before the write: the engine may read it before the write returns
            now = time.monotonic()
            self.sent_at.extend((args[0], args[1], now) for _, op, args in batch if op == "submit_append")
        try:
            self.conn.send_bytes(data)
        except (OSError, ValueError) as e:  # the other end is gone (or this one closed)
            if self.on_error is not None:
                self.on_error(batch, e, True)
            return False
        return True


class SharedSender:
    """One thread that sends for many outboxes (an engine process's connections): what was put meanwhile goes
    out as one message per outbox, in the order put. Fewer threads to wake than an outbox's own each, at a
    price: a write that blocks (a full pipe whose reader is slow) holds up every other connection's answers."""

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self.put = self._queue.put  # (outbox, item): item as Outbox.put takes it
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def _run(self) -> None:
        get, waiting = self._queue.get, self._queue.qsize
        while True:
            batches: dict[Outbox, list] = {}
            for outbox, item in [get(), *(get() for _ in range(waiting()))]:
                batch = batches.get(outbox)
                if batch is None:
                    batch = batches[outbox] = []
                batch.extend(item) if type(item) is list else batch.append(item)
            for outbox, batch in batches.items():
                try:
                    outbox.send(batch)
                except Exception:  # noqa: BLE001  (a bug: that connection stops, the others go on)
                    log.exception("sending %d messages on %r failed; that connection sends no more", len(batch),
                                  outbox.conn)
                    outbox._done.set()


def portable(e: BaseException) -> bool:
    """The error survives the trip to the server's process (pickled here, rebuilt there)."""
    try:
        pickle.loads(pickle.dumps(e))
    except Exception:  # noqa: BLE001
        return False
    return True
