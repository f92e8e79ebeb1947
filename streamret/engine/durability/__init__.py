"""Durability: the policy that decides when a stream's record is written, the writer that writes it off the
step loop, and the store that holds it."""

from .policy import DurabilityPolicy
from .store import DurableStore
from .writer import DurableWriter

__all__ = ["DurabilityPolicy", "DurableStore", "DurableWriter"]
