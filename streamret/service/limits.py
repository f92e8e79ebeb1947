"""What the service allows: message and chunk sizes, streams per tenant, idle eviction, backpressure."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..errors import InvalidArgument, ResourceExhausted

MiB = 1024 * 1024


@dataclass(frozen=True)
class ServiceLimits:
    # Largest gRPC message either way. gRPC's own default (4 MiB) is too small for Arrow batches and
    # for the state of large models (one fla-1.3b stream state is about 101 MB).
    max_message_bytes: int = 128 * MiB
    # Largest Append payload; a larger chunk is acked with RESOURCE_EXHAUSTED.
    max_chunk_bytes: int = 4 * MiB
    # Streams one tenant may hold open on this server (closing one frees its place).
    max_streams_per_tenant: int = 10_000
    # A stream untouched this long is evicted to the durable store (not deleted); 0 disables.
    idle_evict_s: float = 600.0
    # How long a chunk waits for room in a full engine before it is acked RESOURCE_EXHAUSTED.
    busy_wait_s: float = 5.0
    # Chunks of one Append call waiting for their acks; past it the server stops reading the call,
    # which pushes back on the client through gRPC flow control.
    max_unacked_per_call: int = 1024
    # Documents of one Batch request in flight at once; chunk size batch documents are cut into.
    batch_in_flight: int = 256
    batch_chunk_bytes: int = 64 * 1024
    # Labels on OpenStream.
    max_labels: int = 32
    max_label_chars: int = 256

    def __post_init__(self) -> None:
        for name in ("max_message_bytes", "max_chunk_bytes", "max_streams_per_tenant", "max_unacked_per_call",
                     "batch_in_flight", "batch_chunk_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"ServiceLimits.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("idle_evict_s", "busy_wait_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"ServiceLimits.{name} must be >= 0, got {getattr(self, name)}")
        if self.max_chunk_bytes > self.max_message_bytes:
            raise ValueError(f"max_chunk_bytes ({self.max_chunk_bytes}) exceeds max_message_bytes "
                             f"({self.max_message_bytes}); a chunk travels in one message")

    def check_labels(self, labels: dict[str, str]) -> dict[str, str]:
        if len(labels) > self.max_labels:
            raise InvalidArgument(f"{len(labels)} labels; the limit is {self.max_labels}")
        for k, v in labels.items():
            if not k or len(k) > self.max_label_chars or len(v) > self.max_label_chars:
                raise InvalidArgument(f"label {k[:40]!r}: keys need 1..{self.max_label_chars} characters and "
                                      f"values at most {self.max_label_chars}")
        return dict(labels)


@dataclass
class _Held:
    tenant: str
    labels: dict[str, str] = field(default_factory=dict)
    last_used: float = field(default_factory=time.monotonic)
    evicted: bool = False


class StreamRegistry:
    """The streams each tenant holds open on this server: counts them against the limit, keeps their
    labels, and knows which ones sat idle long enough to evict.

    Only the event loop thread touches it, so it needs no lock.
    """

    def __init__(self, max_per_tenant: int):
        self.max_per_tenant = max_per_tenant
        self._held: dict[str, _Held] = {}
        self._count: dict[str, int] = {}

    def __contains__(self, engine_id: str) -> bool:
        return engine_id in self._held

    def __len__(self) -> int:
        return len(self._held)

    def count(self, tenant: str) -> int:
        return self._count.get(tenant, 0)

    def reserve(self, tenant: str, engine_id: str) -> bool:
        """Take a place for a stream about to be created; False if it was held already."""
        if engine_id in self._held:
            return False
        if self.count(tenant) >= self.max_per_tenant:
            raise ResourceExhausted(f"this tenant holds {self.count(tenant)} streams, the limit; close some "
                                    "(or raise the server's --max-streams-per-tenant)")
        self._held[engine_id] = _Held(tenant)
        self._count[tenant] = self.count(tenant) + 1
        return True

    def touch(self, tenant: str, engine_id: str, labels: dict[str, str] | None = None) -> dict[str, str]:
        """Mark a stream used now (holding it if it was not, e.g. after a restart); return its labels."""
        held = self._held.get(engine_id)
        if held is None:
            held = self._held[engine_id] = _Held(tenant)
            self._count[tenant] = self.count(tenant) + 1
        held.last_used, held.evicted = time.monotonic(), False
        if labels:
            held.labels = labels
        return held.labels

    def release(self, engine_id: str) -> None:
        held = self._held.pop(engine_id, None)
        if held is not None:
            self._count[held.tenant] -= 1

    def idle(self, idle_s: float, now: float | None = None) -> list[str]:
        """Streams unused for idle_s seconds and not evicted yet (marked evicted by this call)."""
        now = time.monotonic() if now is None else now
        out = [eid for eid, h in self._held.items() if not h.evicted and now - h.last_used >= idle_s]
        for eid in out:
            self._held[eid].evicted = True
        return out

    def per_tenant(self) -> dict[str, int]:
        return {t: n for t, n in self._count.items() if n}
