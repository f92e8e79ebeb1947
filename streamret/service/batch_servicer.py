"""The Batch service: Arrow IPC tables in and out (documents to embed, event feeds to append)."""

from __future__ import annotations

import asyncio
import time
from collections import deque

import pyarrow as pa
import pyarrow.compute as pc

from ..batch.arrow_table import int64_column, table_from_ipc, table_to_ipc
from ..errors import InvalidArgument
from .auth import Caller
from .gate import Gate, rpc
from .proto_gen import streamret_pb2 as pb
from .proto_gen import streamret_pb2_grpc as pb_grpc
from .roles import role_name, role_number
from .tenant_engine import ChunkAck, PendingAck, TenantEngine

_ACK_SCHEMA = pa.schema([
    ("stream_id", pa.string()), ("seq", pa.int64()), ("applied_seq", pa.int64()), ("durable_seq", pa.int64()),
    ("tokens", pa.int64()), ("duplicate", pa.bool_()), ("error_code", pa.int32()), ("error_message", pa.string()),
    ("retryable", pa.bool_()),
])
_STRINGS = (pa.string(), pa.large_string(), pa.string_view())
_SLICE_ROWS = 4096  # rows turned into Python objects at once: a table's memory, not 300,000 rows' objects
_YIELD_ROWS = 32


def _deadline(context) -> float | None:
    """The call's deadline on time.monotonic()'s clock (None: the client set none)."""
    left = context.time_remaining()
    return None if left is None else time.monotonic() + left


def _events_table(table: pa.Table) -> pa.Table:
    """An AppendEvents table checked whole before any row is queued, as columns stream_id (string), seq
    (int64), text (UTF-8 bytes), flush and durable (bool; false where absent or null)."""
    missing = [c for c in ("stream_id", "seq", "text") if c not in table.column_names]
    if missing:
        raise InvalidArgument(f"AppendEvents table lacks column(s) {missing}; it needs stream_id (string), "
                              f"seq (integer), text (string); it has {table.column_names}")
    checks = {"stream_id": lambda t: t in _STRINGS, "seq": pa.types.is_integer, "text": lambda t: t in _STRINGS}
    for name, ok in checks.items():
        if not ok(table.column(name).type):
            raise InvalidArgument(f"AppendEvents column {name!r} has type {table.column(name).type}; "
                                  "stream_id and text must be string, seq an integer")
    flags = {}
    for name in ("flush", "durable"):
        if name not in table.column_names:
            flags[name] = pa.chunked_array([pa.repeat(False, table.num_rows)], pa.bool_())
        elif not pa.types.is_boolean(table.column(name).type):
            raise InvalidArgument(f"AppendEvents column {name!r} has type {table.column(name).type}; it must be bool")
        else:
            flags[name] = pc.fill_null(table.column(name), False)
    seqs = int64_column(table.column("seq"), "AppendEvents column 'seq'", "seqs count 1, 2, 3 ... per stream")
    return pa.table({"stream_id": table.column("stream_id").cast(pa.string()), "seq": seqs,
                     "text": table.column("text").cast(pa.large_binary()), **flags})


def _acks_table(acks: list[ChunkAck]) -> pa.Table:
    cols = {name: [getattr(a, name) for a in acks] for name in _ACK_SCHEMA.names}
    return pa.table(cols, schema=_ACK_SCHEMA)


class BatchServicer(pb_grpc.BatchServicer):
    def __init__(self, streams: TenantEngine, gate: Gate):
        self.streams = streams
        self.gate = gate

    @rpc
    async def EmbedTable(self, caller: Caller, request: pb.EmbedTableRequest, context) -> pb.EmbedTableResponse:
        role = role_name(request.role, "EmbedTableRequest.role")  # before the table is read
        out = await self.streams.embed_table(caller, table_from_ipc(request.arrow_ipc), deadline=_deadline(context),
                                             role=role)
        return pb.EmbedTableResponse(arrow_ipc=table_to_ipc(out), role=role_number(role))

    @rpc
    async def EmbedTables(self, caller: Caller, requests, context):
        """Each payload in the role its own request asks for (a stream of requests may mix them)."""
        async for request in self.gate.until_drained(requests):
            role = role_name(request.role, "EmbedTablesRequest.role")
            out = await self.streams.embed_table(caller, table_from_ipc(request.arrow_ipc),
                                                 deadline=_deadline(context), role=role)
            yield pb.EmbedTablesResponse(arrow_ipc=table_to_ipc(out), role=role_number(role))

    @rpc
    async def AppendEvents(self, caller: Caller, requests, context):
        caller.require_write("appending events")
        async for request in self.gate.until_drained(requests):
            table = _events_table(table_from_ipc(request.arrow_ipc))
            with self.streams.batch_call(caller):
                parts = [_acks_table(await self._append_rows(caller, table.slice(start, _SLICE_ROWS)))
                         for start in range(0, table.num_rows, _SLICE_ROWS)]
            acks = pa.concat_tables(parts) if parts else _ACK_SCHEMA.empty_table()
            yield pb.AppendEventsResponse(arrow_ipc=table_to_ipc(acks))

    async def _append_rows(self, caller: Caller, rows: pa.Table) -> list[ChunkAck]:
        """Queue rows in order with at most limits.batch_in_flight rows and batch_bytes_in_flight bytes in the
        engine, handing the event loop to other calls every few rows; the acks, in row order."""
        limits = self.streams.limits
        window: deque[tuple[PendingAck, int]] = deque()
        queued, out = 0, []
        columns = [rows.column(name).to_pylist() for name in ("stream_id", "seq", "text", "flush", "durable")]
        for i, row in enumerate(zip(*columns)):
            while window and (len(window) >= limits.batch_in_flight or queued >= limits.batch_bytes_in_flight):
                pending, size = window.popleft()
                out.append(await pending)
                queued -= size
            size = len(row[2] or b"")
            window.append((await self._submit(caller, *row), size))
            queued += size
            if i % _YIELD_ROWS == _YIELD_ROWS - 1:
                await asyncio.sleep(0)  # another tenant's call waits at most this many rows' submission
        out += [await pending for pending, _ in window]
        return out

    async def _submit(self, caller: Caller, stream_id: str | None, seq: int | None, data: bytes | None,
                      flush: bool, durable: bool):
        """Queue one event (creating its stream if needed); a bad row gets an error ack, the feed goes on."""
        try:
            if stream_id is None or seq is None or data is None:
                raise InvalidArgument("stream_id, seq and text must not be null")
            if seq < 1:
                raise InvalidArgument(f"seq must be >= 1 (events count 1, 2, 3 ... per stream), got {seq}")
            caller.engine_id(stream_id)
        except InvalidArgument as e:
            return self.streams.failed_ack(caller, stream_id or "", seq or 0, e)
        return await self.streams.submit_append(caller, stream_id, seq, data, flush=flush, durable=durable)
