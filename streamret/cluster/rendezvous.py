"""Rendezvous (highest-random-weight) hashing: which worker owns a stream.

Every (stream, worker) pair gets a pseudo-random weight; the stream goes to the live worker with the
highest one. Adding a worker moves only the streams it now wins; losing one moves only its own
streams, each to its runner-up. Every gateway computes the same answer from the same worker list,
with no table to share.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def weight(key: str, worker: str) -> int:
    """A stable 64-bit weight of a (stream key, worker name) pair; the same in every process."""
    h = hashlib.blake2b(f"{worker}\x00{key}".encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(h.digest(), "big")


def owner(key: str, workers: Iterable[str]) -> str:
    """The worker that owns `key` among `workers` (ValueError when there is none)."""
    best, best_w = None, -1
    for w in workers:
        x = weight(key, w)
        if x > best_w or (x == best_w and w > best):
            best, best_w = w, x
    if best is None:
        raise ValueError(f"no live worker to own {key!r}; start workers first (streamret cluster scale N)")
    return best
