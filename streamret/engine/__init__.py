"""The streaming engine: continuous batching across streams, chunk-invariant text, tiered durable state."""

from .api import EngineAPI
from .config import Ack, Checkpoint, EngineConfig, StreamInfo, Summary
from .engine import Engine
from .segments import Segment

__all__ = ["Ack", "Checkpoint", "Engine", "EngineAPI", "EngineConfig", "Segment", "StreamInfo", "Summary"]
