"""Batch I/O: whole documents from Arrow tables and Parquet corpora, embedded through the streaming engine.

- `embed_table(engine, table)`: an in-memory Arrow table (arrow_table.py).
- `embed_parquet(input, output)`: a Parquet corpus of any size to a folder of Parquet parts, resumable,
  locally or on Ray Data (parquet_job.py, corpus.py, parts.py, ray_job.py).
- `Embedder`: a Ray Data callable class for `ds.map_batches` on your own dataset and columns (ray_data.py).
"""

from .arrow_table import embed_table, table_from_ipc, table_to_ipc
from .parquet_job import BatchReport, EmbedInterrupted, embed_parquet
from .ray_data import Embedder

__all__ = ["BatchReport", "EmbedInterrupted", "Embedder", "embed_parquet", "embed_table", "table_from_ipc",
           "table_to_ipc"]
