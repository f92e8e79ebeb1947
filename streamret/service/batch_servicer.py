"""The Batch service: Arrow IPC tables in and out (documents to embed, event feeds to append)."""

from __future__ import annotations

import pyarrow as pa

from ..batch.arrow_table import int64_column, table_from_ipc, table_to_ipc
from ..errors import InvalidArgument
from .auth import Caller
from .gate import Gate, rpc
from .proto_gen import streamret_pb2 as pb
from .proto_gen import streamret_pb2_grpc as pb_grpc
from .tenant_engine import ChunkAck, TenantEngine

_ACK_SCHEMA = pa.schema([
    ("stream_id", pa.string()), ("seq", pa.int64()), ("applied_seq", pa.int64()), ("durable_seq", pa.int64()),
    ("tokens", pa.int64()), ("duplicate", pa.bool_()), ("error_code", pa.int32()), ("error_message", pa.string()),
    ("retryable", pa.bool_()),
])
_STRINGS = (pa.string(), pa.large_string(), pa.string_view())


def _event_columns(table: pa.Table) -> tuple[list, ...]:
    """stream_id, seq, text, flush, durable columns of an AppendEvents table as Python lists (texts as
    UTF-8 bytes; the optional boolean flush and durable columns false where absent or null)."""
    missing = [c for c in ("stream_id", "seq", "text") if c not in table.column_names]
    if missing:
        raise InvalidArgument(f"AppendEvents table lacks column(s) {missing}; it needs stream_id (string), "
                              f"seq (integer), text (string); it has {table.column_names}")
    checks = {"stream_id": lambda t: t in _STRINGS, "seq": pa.types.is_integer, "text": lambda t: t in _STRINGS}
    for name, ok in checks.items():
        if not ok(table.column(name).type):
            raise InvalidArgument(f"AppendEvents column {name!r} has type {table.column(name).type}; "
                                  "stream_id and text must be string, seq an integer")
    flags = []
    for name in ("flush", "durable"):
        if name not in table.column_names:
            flags.append([False] * table.num_rows)
        elif not pa.types.is_boolean(table.column(name).type):
            raise InvalidArgument(f"AppendEvents column {name!r} has type {table.column(name).type}; it must be bool")
        else:
            flags.append([bool(v) for v in table.column(name).to_pylist()])
    texts = table.column("text").cast(pa.large_binary()).to_pylist()
    seqs = int64_column(table.column("seq"), "AppendEvents column 'seq'", "seqs count 1, 2, 3 ... per stream")
    return table.column("stream_id").to_pylist(), seqs.to_pylist(), texts, *flags


def _acks_table(acks: list[ChunkAck]) -> pa.Table:
    cols = {name: [getattr(a, name) for a in acks] for name in _ACK_SCHEMA.names}
    return pa.table(cols, schema=_ACK_SCHEMA)


class BatchServicer(pb_grpc.BatchServicer):
    def __init__(self, streams: TenantEngine, gate: Gate):
        self.streams = streams
        self.gate = gate

    @rpc
    async def EmbedTable(self, caller: Caller, request: pb.ArrowPayload, context) -> pb.ArrowPayload:
        out = await self.streams.embed_table(caller, table_from_ipc(request.arrow_ipc))
        return pb.ArrowPayload(arrow_ipc=table_to_ipc(out))

    @rpc
    async def EmbedTables(self, caller: Caller, requests, context):
        async for request in self.gate.until_drained(requests):
            out = await self.streams.embed_table(caller, table_from_ipc(request.arrow_ipc))
            yield pb.ArrowPayload(arrow_ipc=table_to_ipc(out))

    @rpc
    async def AppendEvents(self, caller: Caller, requests, context):
        caller.require_write("appending events")
        async for request in self.gate.until_drained(requests):
            columns = _event_columns(table_from_ipc(request.arrow_ipc))
            pending = [await self._submit(caller, *row) for row in zip(*columns)]
            yield pb.ArrowPayload(arrow_ipc=table_to_ipc(_acks_table([await p for p in pending])))

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
