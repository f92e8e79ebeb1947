"""One thread that reads every connection of an engine process (`STREAMRET_ENGINE_READER=shared`, the default).

An engine process that takes connections (front processes, attach.py) could read each on a thread of its own
(`per_connection`). With six fronts its step loop waited about 8 ms a step for its engine lock while no thread held the
lock long (bench/RESULTS.md, "End to end on the H200, session 8/9"): most likely the GIL, which every runnable
Python thread of the process may hold for a switch interval before the step thread gets it back. A
`SharedReader` reads them all on one thread with `multiprocessing.connection.wait`, so that a burst of
batches on many connections wakes one thread, not one per connection. On the H200 with six fronts (session
10, bench/RESULTS.md) it cut that wait to 1.0 ms a step and the ack p99 at saturation from 986 to 528 ms at
the same tokens/s: the default since.

Per connection it keeps what a thread of its own gives: batches in arrival order, each handled before the
connection's next is read; a connection's end (EOF or a read error) ends that connection only. Across
connections it reads the ready ones in turn, one batch each per round. What it cannot do: a connection that
sends part of a message and stops (its process frozen mid-write) holds up the others until the rest comes;
the writers here are our own processes, each message written whole by one `send_bytes`.
"""

from __future__ import annotations

import os
import queue
import socket
from collections.abc import Callable
from multiprocessing.connection import wait

ENGINE_READERS = ("shared", "per_connection", "shared_send")  # the first is the default


def engine_reader() -> str:
    """STREAMRET_ENGINE_READER: how an engine process that takes connections reads them: "shared" (the
    default: one thread for them all and the owner's pipe: SharedReader), "per_connection" (a thread each), or
    "shared_send" (that, and one thread sends the answers on every front's connection: pipe.SharedSender).
    An engine process without connections to take reads its pipe on its main thread whatever the value."""
    value = os.environ.get("STREAMRET_ENGINE_READER", "") or ENGINE_READERS[0]
    if value not in ENGINE_READERS:
        raise ValueError(f"STREAMRET_ENGINE_READER={value!r}: give one of {', '.join(ENGINE_READERS)}")
    return value


# what a connection's handlers return: None to go on reading, a str to end run() with it
Outcome = str | None


class SharedReader:
    """Reads many connections on the thread that calls run(); others add connections to it at any time."""

    def __init__(self) -> None:
        # add() wakes the wait through this pair: the connections it waits on are fixed for one wait
        self._wake_recv, self._wake_send = socket.socketpair()
        self._wake_recv.setblocking(False)
        self._added: queue.SimpleQueue = queue.SimpleQueue()
        self._conns: dict = {}  # connection -> (on_batch, on_end), read by run()'s thread only

    def add(self, conn, on_batch: Callable[[object], Outcome], on_end: Callable[[], Outcome]) -> None:
        """Read `conn` from now on: each message received goes to on_batch; its end (EOF, a read error) to on_end,
        after the connection is dropped from the reading (on_end closes it). From any thread."""
        self._added.put((conn, on_batch, on_end))
        self._wake_send.send(b"\0")

    def run(self) -> str:
        """Read until a handler returns a str; that str."""
        conns, wake = self._conns, self._wake_recv
        while True:
            for ready in wait([wake, *conns]):
                if ready is wake:
                    self._take_added()
                    continue
                on_batch, on_end = conns[ready]
                try:
                    message = ready.recv()
                except (EOFError, OSError):
                    del conns[ready]
                    outcome = on_end()
                else:
                    outcome = on_batch(message)
                if outcome is not None:
                    return outcome

    def _take_added(self) -> None:
        try:
            self._wake_recv.recv(4096)  # (one byte per add: what is there is drained, the queue read whole)
        except BlockingIOError:
            pass
        while True:
            try:
                conn, on_batch, on_end = self._added.get_nowait()
            except queue.Empty:
                return
            self._conns[conn] = (on_batch, on_end)
