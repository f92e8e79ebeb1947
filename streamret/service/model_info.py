"""What the server says about the model it serves and its limits: GET /info and the GetModelInfo RPC."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ..engine.api import EngineAPI, model_device
from .limits import ServiceLimits


def served_version() -> str | None:
    try:
        return version("streamret")
    except PackageNotFoundError:
        return None


def describe_model(engine: EngineAPI, name: str) -> dict[str, Any]:
    """The served model; fields an engine does not know (a cluster gateway does not hold the model) are None.
    Engine processes (a ShardedEngine) say theirs in `model_info`."""
    model = getattr(engine, "model", None)
    param = next(iter(model.parameters()), None) if model is not None and hasattr(model, "parameters") else None
    tokenizer = getattr(engine, "tokenizer", None)
    told = getattr(engine, "model_info", None) or {}
    return {
        "model": name,
        "fingerprint": getattr(engine, "fingerprint", None),
        "embedding_dim": engine.embed_dim,
        "tokenizer": type(tokenizer).__name__ if tokenizer is not None else told.get("tokenizer"),
        "dtype": str(param.dtype).removeprefix("torch.") if param is not None else told.get("dtype"),
        "device": model_device(engine),
        "max_input_length": None,  # a whole document of any length: the model reads it as a stream
        "roles": list(served_roles(engine)),
    }


def served_roles(engine: EngineAPI) -> tuple[str, ...]:
    """The embedding roles the engine's model serves ("query", and "document" with a document map)."""
    roles = getattr(engine, "roles", None)  # (an engine from before roles serves the query embedding only)
    return tuple(roles.available) if roles is not None else ("query",)


def describe_limits(limits: ServiceLimits) -> dict[str, int]:
    return {
        "max_request_bytes": limits.max_message_bytes,
        "max_chunk_bytes": limits.max_chunk_bytes,
        "batch_in_flight": limits.batch_in_flight,
        "max_streams_per_tenant": limits.max_streams_per_tenant,
    }
