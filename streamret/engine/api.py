"""EngineAPI: the engine as the gRPC service and the batch job use it.

Two classes implement it: `Engine` (engine.py: one model on one device, in this process) and the Ray
gateway's `ClusterEngine` (streamret/cluster/router.py: each call goes to the worker that owns the
stream). The service and the batch job are typed against this protocol, so either one serves them.
Beyond it, an engine whose work runs in other processes may offer `embed_documents`: batch.embed_table then
hands it the rows to run there, instead of making each row's engine calls from this process (ShardedEngine).
`tests/test_engine_api.py` holds both classes to it.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Protocol

import numpy as np

from .config import Ack, Checkpoint, StreamInfo, Summary
from .segments import Segment


class EngineAPI(Protocol):
    fingerprint: str  # the model's fingerprint (streamret.model.checkpoint.model_fingerprint)

    @property
    def embed_dim(self) -> int:
        """Size of the embeddings."""
        ...

    # streams

    def open(self, stream_id: str, create_if_missing: bool = True, group: str | None = None,
             durable: bool = True) -> StreamInfo: ...

    def exists(self, stream_id: str) -> bool: ...

    def info(self, stream_id: str) -> StreamInfo: ...

    def close(self, stream_id: str, keep_state: bool = False) -> None: ...

    def evict(self, stream_id: str) -> None: ...

    def fork(self, src: str, dst: str) -> StreamInfo: ...

    def export_state(self, stream_id: str) -> bytes: ...

    def import_state(self, stream_id: str, data: bytes) -> StreamInfo: ...

    # appends: the Future of submit_append gives the chunk's Ack

    def submit_append(self, stream_id: str, seq: int, data: bytes | str, flush: bool = False,
                      durable: bool = False, group: str | None = None) -> Future: ...

    def append(self, stream_id: str, seq: int, data: bytes | str, flush: bool = False, durable: bool = False,
               group: str | None = None) -> Ack: ...

    def flush(self, stream_id: str) -> Ack: ...

    # outputs

    def embedding(self, stream_id: str, role: str = "query") -> np.ndarray: ...

    def check_role(self, role: str) -> None: ...

    def as_role(self, embeddings: np.ndarray, role: str) -> np.ndarray: ...

    def segments(self, stream_id: str, with_embeddings: bool = True) -> list[Segment]: ...

    def summarize(self, stream_id: str, k: int = 5, mode: str = "extractive",
                  max_new_tokens: int = 64) -> Summary: ...

    # the whole engine

    def checkpoint_all(self, timeout_s: float | None = None) -> Checkpoint | None:
        """Apply what was accepted and make every stream durable; the report, or None when it cannot be said."""
        ...

    def stats(self) -> dict: ...

    def durable_writable(self) -> bool | None:
        """False while the durable store refuses writes, None when this engine cannot say (no store of its own)."""
        ...

    def shutdown(self) -> Checkpoint | None: ...


def model_device(engine: object) -> str | None:
    """Where an engine's model runs ("cpu", "cuda:0"...): an engine in this process says it by its model's
    parameters, engine processes (a ShardedEngine) in the `model_info` they sent; None where the engine does
    not hold the model (a cluster gateway)."""
    model = getattr(engine, "model", None)
    param = next(iter(model.parameters()), None) if model is not None and hasattr(model, "parameters") else None
    if param is not None:
        return str(param.device)
    return (getattr(engine, "model_info", None) or {}).get("device")
