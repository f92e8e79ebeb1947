"""Bounds on queued work: chunks and bytes accepted but not yet applied, per stream and in total.

A chunk counts from its acceptance until it is applied or fails; past a bound, `reserve` raises TooBusy (which
the service turns into a short wait) instead of letting memory grow. The scheduler keeps one for its engine;
a `ShardedEngine` keeps one in front of its engine processes, so that a full queue is refused at once in the
caller's thread, as the in-process engine does, rather than after a trip to the engine.
"""

from __future__ import annotations

from ..errors import TooBusy


class QueueBounds:
    def __init__(self, max_chunks_per_stream: int, max_bytes_per_stream: int, max_chunks: int, max_bytes: int):
        self.max_chunks_per_stream, self.max_bytes_per_stream = max_chunks_per_stream, max_bytes_per_stream
        self.max_chunks, self.max_bytes = max_chunks, max_bytes
        self._chunks: dict[str, int] = {}
        self._bytes: dict[str, int] = {}
        self.chunks = 0  # in total
        self.bytes = 0

    def check(self, stream_id: str, nbytes: int) -> None:
        """TooBusy when one more chunk of nbytes would pass a bound."""
        chunks, nb = self._chunks.get(stream_id, 0), self._bytes.get(stream_id, 0)
        if chunks + 1 > self.max_chunks_per_stream or nb + nbytes > self.max_bytes_per_stream:
            raise TooBusy(
                f"stream {stream_id!r} has {chunks} chunks ({nb} bytes) waiting, the most is "
                f"{self.max_chunks_per_stream} chunks ({self.max_bytes_per_stream} bytes); "
                "wait for acks before sending more"
            )
        if self.chunks + 1 > self.max_chunks or self.bytes + nbytes > self.max_bytes:
            raise TooBusy(f"the engine has {self.chunks} chunks ({self.bytes} bytes) waiting; retry shortly")

    def reserve(self, stream_id: str, nbytes: int) -> None:
        """Count one chunk (TooBusy when it would pass a bound); `release` gives its share back."""
        self.check(stream_id, nbytes)
        self._chunks[stream_id] = self._chunks.get(stream_id, 0) + 1
        self._bytes[stream_id] = self._bytes.get(stream_id, 0) + nbytes
        self.chunks += 1
        self.bytes += nbytes

    def release(self, stream_id: str, nbytes: int) -> None:
        self._chunks[stream_id] -= 1
        self._bytes[stream_id] -= nbytes
        if not self._chunks[stream_id]:
            del self._chunks[stream_id], self._bytes[stream_id]
        self.chunks -= 1
        self.bytes -= nbytes

    def waiting(self, stream_id: str) -> int:
        """Chunks of the stream counted now."""
        return self._chunks.get(stream_id, 0)
