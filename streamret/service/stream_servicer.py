"""The StreamRet service: protobuf in and out; all the work is in TenantEngine."""

from __future__ import annotations

import asyncio
import time
from collections import deque

import grpc

from ..errors import InvalidArgument, Unavailable
from .auth import Caller
from .gate import Gate, rpc
from .model_info import describe_limits, describe_model, served_version
from .parsing import valid
from .proto_gen import streamret_pb2 as pb
from .proto_gen import streamret_pb2_grpc as pb_grpc
from .roles import role_name, role_number
from .tenant_engine import ChunkAck, TenantEngine

DEFAULT_SEGMENTS = 5
DEFAULT_NEW_TOKENS = 64
# MODE_UNSPECIFIED is the default, extractive (and the value 0 that clients before MODE_EXTRACTIVE send for it)
_MODES = {pb.SummarizeRequest.MODE_UNSPECIFIED: "extractive", pb.SummarizeRequest.MODE_EXTRACTIVE: "extractive",
          pb.SummarizeRequest.MODE_GENERATIVE: "generative"}
_END = object()  # the client finished sending
_DRAINED = object()  # the server is draining: no more chunks taken from this call
# chunks whose handler stamps the servicer keeps (recent_acks), for benches that split an ack's time into legs
# (bench/e2e.py's service parts send about 11,000)
RECENT_CHUNKS = 16384


# OpenStream, ForkStream and ImportState answer where a stream stands, each in its own message with the same fields
StreamInfoMessage = pb.OpenStreamResponse | pb.ForkStreamResponse | pb.ImportStateResponse


def stream_info(message_type: type[StreamInfoMessage], info, stream_id: str,
                labels: dict[str, str] | None = None) -> StreamInfoMessage:
    return message_type(stream_id=stream_id, applied_seq=info.applied_seq, durable_seq=info.durable_seq,
                        tokens=info.tokens, model_fingerprint=info.model_fingerprint, labels=labels or {})


def embedding_message(values, info, stream_id: str, role: str = "query") -> pb.GetEmbeddingResponse:
    """The embedding with the role it has, always set (an unset role says: a server older than roles)."""
    return pb.GetEmbeddingResponse(stream_id=stream_id, applied_seq=info.applied_seq, tokens=info.tokens,
                                   values=values.tolist(), role=role_number(role))


def summary_message(summary, stream_id: str) -> pb.SummarizeResponse:
    segments = [pb.Segment(text=s.text, start_byte=s.start_byte, end_byte=s.end_byte, score=s.score)
                for s in summary.segments]
    return pb.SummarizeResponse(stream_id=stream_id, applied_seq=summary.applied_seq, segments=segments,
                                generated_text=summary.generated_text or "")


def ack_message(ack: ChunkAck) -> pb.AppendResponse:
    out = pb.AppendResponse(stream_id=ack.stream_id, seq=ack.seq, applied_seq=ack.applied_seq,
                            durable_seq=ack.durable_seq, tokens=ack.tokens)
    # fields left at their defaults are not set at all: the message is the same, and built faster
    if ack.duplicate:
        out.duplicate = True
    if ack.error_code:
        out.error_code, out.error_message, out.retryable = ack.error_code, ack.error_message, ack.retryable
    if ack.segment_embedding is not None:
        out.segment_embedding.extend(ack.segment_embedding.tolist())
    return out


def _payload(request: pb.AppendRequest) -> bytes:
    kind = request.WhichOneof("payload")
    if kind == "data":
        return request.data
    return request.text.encode("utf-8") if kind == "text" else b""


class StreamRetServicer(pb_grpc.StreamRetServicer):
    def __init__(self, streams: TenantEngine, gate: Gate, model_name: str = "default"):
        self.streams = streams
        self.gate = gate
        self.model_name = model_name
        # the last chunks answered: (client stream id, seq, read at, ack write begun at, ack write returned at),
        # time.monotonic (the clock of every process of the host, the engine processes' too); a deque append needs
        # no lock
        self.recent_acks: deque[tuple[str, int, float, float, float]] = deque(maxlen=RECENT_CHUNKS)

    @rpc
    async def GetModelInfo(self, caller: Caller, request: pb.GetModelInfoRequest, context) -> pb.GetModelInfoResponse:
        model = describe_model(self.streams.engine, self.model_name)
        limits = describe_limits(self.streams.limits)
        return pb.GetModelInfoResponse(
            model=model["model"], fingerprint=model["fingerprint"] or "", embedding_dim=model["embedding_dim"],
            tokenizer=model["tokenizer"] or "", dtype=model["dtype"] or "", device=model["device"] or "",
            version=served_version() or "", max_chunk_bytes=limits["max_chunk_bytes"],
            max_message_bytes=limits["max_request_bytes"], max_streams_per_tenant=limits["max_streams_per_tenant"],
            batch_in_flight=limits["batch_in_flight"], roles=[role_number(r) for r in model["roles"]])

    @rpc
    async def OpenStream(self, caller: Caller, request: pb.OpenStreamRequest, context) -> pb.OpenStreamResponse:
        info, labels = await self.streams.open(caller, request.stream_id, request.create_if_missing,
                                               dict(request.labels))
        return stream_info(pb.OpenStreamResponse, info, request.stream_id, labels)

    @rpc
    async def Append(self, caller: Caller, requests, context) -> None:
        """Read chunks and submit them as they come; send the acks in request order.

        A reader task keeps reading while earlier chunks are still in the engine, so one call carries
        many chunks in flight, at most limits.max_unacked_per_call: past that the reader waits, and gRPC
        flow control holds the client back. On drain the reader stops taking chunks; the acks of those
        taken go out, then the call ends with UNAVAILABLE.

        Sends its (empty) initial metadata as it starts: a client that waits for it knows that the call is set up
        and its chunks go straight to this handler (a load bench starts its clock there; setting up a call took
        31-89 ms at p99 with 256 calls at once on a busy 2-core machine, bench/RESULTS.md).

        Reads with context.read() and writes with context.write() rather than iterating `requests` and
        yielding acks: each message then passes through no async generator (this one's, the rpc gate's,
        the metrics interceptor's), which at thousands of chunks a second is much of the server's CPU.
        """
        caller.require_write("appending to a stream")
        await context.send_initial_metadata(())
        window = asyncio.Queue()  # (pending ack, bytes, read at) ..., then _END, _DRAINED or an exception
        room = asyncio.Semaphore(self.streams.limits.max_unacked_per_call)
        reading = True

        async def read() -> None:
            nonlocal reading
            try:
                while (request := await context.read()) is not grpc.aio.EOF:
                    read_at = time.monotonic()
                    reading = False  # from here until the chunk is queued, a drain must not cancel us
                    request = valid(request)
                    if request.seq < 1:
                        raise InvalidArgument(f"AppendRequest.seq must be >= 1 (chunks count 1, 2, 3 ...), "
                                              f"got {request.seq}")
                    data = _payload(request)
                    await room.acquire()
                    ack = await self.streams.submit_append(caller, request.stream_id, request.seq, data,
                                                           request.flush, request.return_segment_embedding,
                                                           request.durable)
                    window.put_nowait((ack, len(data), read_at))
                    if self.gate.draining:
                        window.put_nowait(_DRAINED)
                        return
                    reading = True
                window.put_nowait(_END)
            except asyncio.CancelledError:
                window.put_nowait(_DRAINED)  # the writer answers the chunks taken, then ends the call
            except Exception as e:  # noqa: BLE001  (ends the call with its status, after the acks before it)
                window.put_nowait(e)

        def stop_reading() -> None:
            if reading:
                reader.cancel()

        reader = asyncio.create_task(read())
        self.gate.on_drain(stop_reading)
        chunk_acked, recent_acks = self.gate.metrics.chunk_acked, self.recent_acks
        try:
            while (item := window.get_nowait() if window.qsize() else await window.get()) is not _END:
                if item is _DRAINED:
                    raise Unavailable("the server is shutting down; reconnect and resend from durable_seq + 1")
                if isinstance(item, Exception):
                    raise item
                pending, n_bytes, read_at = item
                ack = await pending
                room.release()
                outcome = "error" if ack.error_code else "duplicate" if ack.duplicate else "applied"
                writing = time.monotonic()
                chunk_acked(outcome, n_bytes, writing - read_at)
                await context.write(ack_message(ack))
                recent_acks.append((ack.stream_id, ack.seq, read_at, writing, time.monotonic()))
        finally:
            self.gate.off_drain(stop_reading)
            reader.cancel()

    @rpc
    async def GetEmbedding(self, caller: Caller, request: pb.GetEmbeddingRequest, context) -> pb.GetEmbeddingResponse:
        role = role_name(request.role, "GetEmbeddingRequest.role")
        values, info = await self.streams.embedding(caller, request.stream_id, role)
        return embedding_message(values, info, request.stream_id, role)

    @rpc
    async def Summarize(self, caller: Caller, request: pb.SummarizeRequest, context) -> pb.SummarizeResponse:
        if request.mode not in _MODES:
            raise InvalidArgument(f"SummarizeRequest.mode {request.mode} is unknown; use MODE_EXTRACTIVE (or leave "
                                  "it unset) or MODE_GENERATIVE")
        summary = await self.streams.summarize(caller, request.stream_id, request.max_segments or DEFAULT_SEGMENTS,
                                               _MODES[request.mode], request.max_new_tokens or DEFAULT_NEW_TOKENS)
        return summary_message(summary, request.stream_id)

    @rpc
    async def CloseStream(self, caller: Caller, request: pb.CloseStreamRequest, context) -> pb.CloseStreamResponse:
        role = role_name(request.role, "CloseStreamRequest.role")  # before the close: a bad role closes nothing
        values, info, summary = await self.streams.close(caller, request.stream_id, request.keep_state,
                                                         request.max_segments or DEFAULT_SEGMENTS, role)
        return pb.CloseStreamResponse(embedding=embedding_message(values, info, request.stream_id, role),
                                      summary=summary_message(summary, request.stream_id))

    @rpc
    async def ForkStream(self, caller: Caller, request: pb.ForkStreamRequest, context) -> pb.ForkStreamResponse:
        info = await self.streams.fork(caller, request.source_id, request.new_id)
        return stream_info(pb.ForkStreamResponse, info, request.new_id)

    @rpc
    async def ExportState(self, caller: Caller, request: pb.ExportStateRequest, context) -> pb.ExportStateResponse:
        return pb.ExportStateResponse(data=await self.streams.export_state(caller, request.stream_id))

    @rpc
    async def ImportState(self, caller: Caller, request: pb.ImportStateRequest, context) -> pb.ImportStateResponse:
        info = await self.streams.import_state(caller, request.stream_id, lambda: request.state.data)
        return stream_info(pb.ImportStateResponse, info, request.stream_id)
