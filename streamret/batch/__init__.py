"""Batch I/O: whole documents from Arrow tables and Parquet corpora, embedded through the streaming engine.

- `embed_table(engine, table)`: an in-memory Arrow table (arrow_table.py).
- `embed_parquet(input, output)`: a Parquet corpus of any size to a folder of Parquet parts, resumable,
  locally or on Ray Data (parquet_job.py, corpus.py, parts.py, ray_job.py).
- `Embedder`: a Ray Data callable class for `ds.map_batches` on your own dataset and columns (ray_data.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .arrow_table import embed_table, table_from_ipc, table_to_ipc
    from .parquet_job import BatchReport, EmbedInterrupted, embed_parquet
    from .ray_data import Embedder

# imported on first use: an engine process runs its sub-batches with runner.py and sub_batches.py alone, and
# pyarrow (the rest) costs 0.36 s of a core to import (the workplace VM) and 76 MB of memory in each of them
_MODULE_OF = {"embed_table": "arrow_table", "table_from_ipc": "arrow_table", "table_to_ipc": "arrow_table",
              "BatchReport": "parquet_job", "EmbedInterrupted": "parquet_job", "embed_parquet": "parquet_job",
              "Embedder": "ray_data"}

__all__ = ["BatchReport", "EmbedInterrupted", "Embedder", "embed_parquet", "embed_table", "table_from_ipc",
           "table_to_ipc"]


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
