"""Batch I/O: embed whole documents held in Arrow tables through the streaming engine."""

from .arrow_table import embed_table, table_from_ipc, table_to_ipc

__all__ = ["embed_table", "table_from_ipc", "table_to_ipc"]
