"""What crosses between gateway and workers besides plain results: how to build a worker, and errors.

Errors travel as `Failure` values, not as raised exceptions: a raised exception reaches the gateway
wrapped in Ray's own error type and rebuilt from its message alone, which loses fields such as
`SeqGap.expected` that the service needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import errors
from ..engine.config import EngineConfig
from .fenced_store import StreamMoved

_KINDS = {cls.__name__: cls for cls in (*vars(errors).values(), StreamMoved)
          if isinstance(cls, type) and issubclass(cls, errors.StreamRetError)}


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a StreamWorker needs to build its engine; the same for every worker of a cluster."""

    model: str  # a MODEL spec (streamret.model.spec), readable on every node
    state_url: str  # the shared durable store: a path every node mounts, or an fsspec URL
    device: str = "auto"
    dtype: str | None = None
    engine: EngineConfig = field(default_factory=EngineConfig)
    threads: int = 16  # worker threads for blocking engine calls (outputs, flush, eviction)


@dataclass(frozen=True)
class WorkerResources:
    """What Ray reserves for each StreamWorker actor."""

    num_gpus: float = 1.0  # 0: CPU only; a fraction shares a GPU between workers
    num_cpus: float = 1.0
    max_restarts: int = 4  # a crashed worker comes back this many times, then its streams move
    memory_bytes: int | None = None


@dataclass(frozen=True)
class Failure:
    """A StreamRetError as a value. reconnect: the gateway must open a new channel to this worker."""

    kind: str
    args: tuple
    reconnect: bool = False

    @classmethod
    def of(cls, exc: errors.StreamRetError, reconnect: bool = False) -> Failure:
        if isinstance(exc, errors.SeqGap):
            return cls("SeqGap", (exc.stream_id, exc.got, exc.expected))
        kind = next(c.__name__ for c in type(exc).__mro__ if _KINDS.get(c.__name__) is c)  # nearest known class
        return cls(kind, (str(exc),), reconnect)

    def error(self) -> errors.StreamRetError:
        return _KINDS.get(self.kind, errors.StreamRetError)(*self.args)
