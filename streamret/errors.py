"""Errors that cross the engine's boundary, each tied to the gRPC status a client will see.

The engine raises these; the gRPC layer maps `code` to a status and `str(err)` to its message,
so every message must be safe and useful to show a client (no internals, no other tenant's data).
"""

from __future__ import annotations


class StreamRetError(Exception):
    """Base class. `code` is the name of a grpc.StatusCode member."""

    code = "INTERNAL"


class InvalidArgument(StreamRetError):
    code = "INVALID_ARGUMENT"


class NotFound(StreamRetError):
    code = "NOT_FOUND"


class AlreadyExists(StreamRetError):
    code = "ALREADY_EXISTS"


class FailedPrecondition(StreamRetError):
    code = "FAILED_PRECONDITION"


class SeqGap(FailedPrecondition):
    """A chunk arrived with seq past the next one expected."""

    def __init__(self, stream_id: str, got: int, expected: int):
        super().__init__(f"stream {stream_id!r}: got seq {got}, expected seq {expected}; resend from {expected}")
        self.stream_id, self.got, self.expected = stream_id, got, expected

    def __reduce__(self):  # pickled with its fields (an engine process sends it to the server's)
        return type(self), (self.stream_id, self.got, self.expected)


class DamagedRecord(InvalidArgument):
    """A stream's durable record fails the record check (changed on disk, or copied from another stream): the
    stream cannot be loaded, and closing it without keeping its state deletes the record."""


class ModelMismatch(FailedPrecondition):
    """A saved state was written by another model (fingerprints differ)."""


class ResourceExhausted(StreamRetError):
    code = "RESOURCE_EXHAUSTED"


class TooBusy(ResourceExhausted):
    """Backpressure: the engine's queues are full; retry after a short wait."""


class Unavailable(StreamRetError):
    code = "UNAVAILABLE"


class DurableWriteFailed(Unavailable):
    """A record could not be written to the durable store (read-only, full or unreachable storage).
    Retryable: nothing was published, and the write is tried again when the chunk is resent."""


class PermissionDenied(StreamRetError):
    code = "PERMISSION_DENIED"


class Unauthenticated(StreamRetError):
    code = "UNAUTHENTICATED"


class DeadlineExceeded(StreamRetError):
    """The call's deadline passed before the work started: it was not done."""

    code = "DEADLINE_EXCEEDED"
