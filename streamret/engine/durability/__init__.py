"""Durability: the store that holds stream records and the writer that writes them off the step loop."""

from .store import DurableStore
from .writer import DurableWriter

__all__ = ["DurableStore", "DurableWriter"]
