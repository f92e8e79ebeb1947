"""What the service allows: message and chunk sizes, streams per tenant, idle eviction, backpressure."""

from __future__ import annotations

import threading
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
    # Calls one tenant may have running at once (an Append call carries chunks of any number of streams,
    # so a client needs few); past it a call is refused with RESOURCE_EXHAUSTED before any work.
    max_calls_per_tenant: int = 128
    # Calls gRPC holds for this server until its event loop takes them (a burst of new calls while the loop is
    # busy). Past it gRPC refuses a call itself, with CANCELLED and no message of ours: its own default (from
    # 1,000 calls on, refused at random, all from 3,000) refused some of 1,024 streams opening at once on one
    # server (bench/RESULTS.md). A waiting call holds a little memory in gRPC and none of ours.
    max_pending_calls: int = 16_384
    # Batch calls (EmbedTable, EmbedTables, AppendEvents) one tenant may have running at once, each on a
    # thread of a pool of batch_threads: one tenant's batches cannot hold every batch thread.
    max_batch_calls_per_tenant: int = 2
    batch_threads: int = 16
    # ImportState calls one tenant may have in work at once. Each holds its record up to 4 times (gRPC's
    # receive buffer, the request's bytes, the parsed request, the record read out of it) and then the decoded
    # tensors and the record's durable write: a refused import is never read out of its request.
    max_imports_per_tenant: int = 2
    # Documents (EmbedTable) or rows (AppendEvents) of one batch call in the engine at once, and their bytes:
    # a tenant's batch work queued in the engine is at most max_batch_calls_per_tenant times these.
    batch_in_flight: int = 256
    batch_bytes_in_flight: int = 4 * MiB
    batch_chunk_bytes: int = 64 * 1024
    # Labels on OpenStream.
    max_labels: int = 32
    max_label_chars: int = 256

    def __post_init__(self) -> None:
        for name in ("max_message_bytes", "max_chunk_bytes", "max_streams_per_tenant", "max_unacked_per_call",
                     "max_calls_per_tenant", "max_pending_calls", "max_batch_calls_per_tenant",
                     "max_imports_per_tenant", "batch_threads", "batch_in_flight",
                     "batch_bytes_in_flight", "batch_chunk_bytes"):
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


class TenantCalls:
    """Calls each tenant has running, against a per-tenant limit. Thread-safe: a batch call gives its place
    back from the thread that ran it, once its work is really over (not when its client gave up)."""

    def __init__(self, limit: int, what: str, fix: str):
        self.limit, self.what, self.fix = limit, what, fix
        self._lock = threading.Lock()
        self._count: dict[str, int] = {}

    def take(self, tenant: str) -> None:
        with self._lock:
            n = self._count.get(tenant, 0)
            if n >= self.limit:
                raise ResourceExhausted(f"this tenant has {n} {self.what} running on this server, the limit; "
                                        f"{self.fix}")
            self._count[tenant] = n + 1

    def give(self, tenant: str) -> None:
        with self._lock:
            n = self._count[tenant] - 1
            if n:
                self._count[tenant] = n
            else:
                del self._count[tenant]

    def count(self, tenant: str) -> int:
        with self._lock:
            return self._count.get(tenant, 0)
