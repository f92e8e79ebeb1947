"""The streaming engine: continuous batching across streams, chunk-invariant text, tiered durable state."""

from .api import EngineAPI
from .config import Ack, Checkpoint, EngineConfig, StreamInfo, Summary
from .engine import Engine
from .segments import Segment
from .shards import ShardedEngine, start_engine

__all__ = ["Ack", "Checkpoint", "Engine", "EngineAPI", "EngineConfig", "Segment", "ShardedEngine", "StreamInfo",
           "Summary", "start_engine"]
