"""Rings (bounded deques) that one thread appends to while another reads them."""

from __future__ import annotations

from collections import deque


def snapshot(ring: deque) -> list:
    """A ring's items now, while another thread appends to it (a copy fails if an append lands meanwhile:
    possible when a collector callback or a switch of threads lets the other one run)."""
    while True:
        try:
            return list(ring)
        except RuntimeError:
            continue
