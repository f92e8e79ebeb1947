"""The engine's stats histograms: counts by powers of two (stats()' `*_buckets` lists, added bucket by bucket
across engine processes and workers: shards.merge_stats)."""

from __future__ import annotations


def power_of_two_bucket(n: int, top: int) -> int:
    """The bucket of a count n >= 1: 0 for 1, 1 for 2, 2 for 3-4, 3 for 5-8, ..., and top for anything past
    2**(top - 1) (n < 1 counts as 1)."""
    return min((max(n, 1) - 1).bit_length(), top)
