"""Python clients for a streamret server: `AsyncClient` (asyncio) and `Client` (blocking).

    with Client("localhost:50051", token="...") as c:
        c.stream("book-1", open("book.txt", "rb"))   # numbered chunks, acks, retries, resume
        print(c.summarize("book-1").segments)

What they add to the raw stubs:
- chunks are numbered 1, 2, 3 ... per stream (continuing from the stream's applied_seq);
- every call has a deadline, one per kind of call (`Deadlines`); an Append call has none as a whole, but
  gives up on a server that sends no ack for `Deadlines.ack_idle_s` while chunks wait for one;
- unary calls that can run twice without harm are retried on UNAVAILABLE (a draining server, a dropped
  connection) by the channel's retry policy (streamret/grpc_transport.py, which also sets keepalive);
- `stream` keeps every chunk the server has not yet made durable; after a reconnect it asks the server
  for durable_seq and resends from there (chunks the server still had are acked as duplicates, so each
  chunk is applied exactly once). Busy servers (RESOURCE_EXHAUSTED acks) are handled the same way, and so
  are chunks applied but not made durable (a retryable UNAVAILABLE ack: the server could not write the
  record): the last chunk that asked for a record is resent, and the server writes the record then.
  When nothing moves for `RetryPolicy.timeout_s` (no chunk newly acked or made durable), `stream`
  raises TimeoutError with the last refusal; it never returns as if the chunks were saved.
- mutual TLS: `client_cert` and `client_key` (PEM) answer a server that asks for a client certificate
  (`streamret serve --tls-client-ca`);
- a server that cannot be reached at all (connection refused, a host name that does not resolve, a
  failing TLS handshake, a server gone mid-stream) is waited for `RetryPolicy.connect_timeout_s`, then
  every call raises ServerUnreachable: one line naming the address and the cause. A malformed address
  is refused at once with ValueError.
- `stream` sends text only (streamret/textcheck.py): a chunk that is not UTF-8 or holds a NUL byte, and a
  flush that would leave a new stream empty, raise InvalidText (a ValueError naming the stream and the
  byte offset) before anything bad is sent; `check_text=False` sends any bytes.
- embedding roles: `embedding`, `embedding_array`, `close_stream`, `embed_table` and `encode` take
  role="query" (the default) or "document" (the model's document map applied: whole documents for an
  index); another value raises ValueError before anything is sent. A server older than roles ignores the
  role and gives the query embedding: asked for "document", the client sees that in the answer and raises
  RoleIgnored (the answer attached) rather than return the wrong embedding.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass

import grpc
import numpy as np
import pyarrow as pa

from . import grpc_transport
from .batch.arrow_table import table_from_ipc, table_to_ipc
from .batch.encode import (
    DEFAULT_BATCH_SIZE,
    check_batch_size,
    check_texts,
    embedding_dim,
    finish,
    progress_bar,
    vectors_of,
)
from .service.proto_gen import streamret_pb2 as pb
from .service.proto_gen import streamret_pb2_grpc as pb_grpc
from .service.roles import role_number, served_role
from .textcheck import InvalidText, Utf8Check

Chunk = bytes | str
_MiB = 1024 * 1024


def _call_broke(e: grpc.aio.AioRpcError) -> bool:
    """The call ended without a verdict on its chunks: the server went away or is draining (UNAVAILABLE),
    or a write raced with the server closing the call (gRPC then reports a local INTERNAL error)."""
    return e.code() == grpc.StatusCode.UNAVAILABLE or (
        e.code() == grpc.StatusCode.INTERNAL and (e.details() or "").startswith("Internal error from Core"))


class ChunkError(Exception):
    """The server refused a chunk for a reason a retry cannot fix (the ack is attached)."""

    def __init__(self, ack: pb.AppendResponse):
        self.ack = ack
        self.code = next((c for c in grpc.StatusCode if c.value[0] == ack.error_code), grpc.StatusCode.UNKNOWN)
        super().__init__(f"stream {ack.stream_id!r} chunk {ack.seq}: {self.code.name}: {ack.error_message}")


class ResumeError(Exception):
    """The server's durable state is older than the oldest chunk this client still holds."""


class RoleIgnored(Exception):
    """The server answered with an embedding in another role than the one asked for: a server older than
    embedding roles ignores the request's role and gives the query embedding. `response` is its answer."""

    def __init__(self, target: str, asked: str, what: str, response):
        self.target, self.asked, self.response = target, asked, response
        super().__init__(f"asked the server at {target} for role {asked!r} ({what}) and got the query embedding: the "
                         "server predates embedding roles (it leaves the answer's role unset); upgrade it, or ask for "
                         "role 'query'. The answer is in this error's .response")


def _check_served(target: str, role: str, served: int, what: str, response) -> None:
    """Raise RoleIgnored unless the answer's EmbeddingRole (`served`) is the `role` asked for. An unset role (a
    server older than roles) counts as the query embedding, which is what such a server gives."""
    if (served_role(served) or "query") != role:
        raise RoleIgnored(target, role, what, response)


class ServerUnreachable(grpc.aio.AioRpcError, ConnectionError):
    """No connection to the server for `RetryPolicy.connect_timeout_s`. An UNAVAILABLE AioRpcError (what the
    client raised before) and a ConnectionError, whose message is one line: the address and the cause.

    kind: "refused", "dns" (the host name does not resolve), "tls" (the TLS handshake failed) or "other"."""

    def __init__(self, target: str, kind: str, cause: str, waited_s: float, context: str = ""):
        message = f"cannot reach the server at {target}: {cause} (waited {waited_s:.1f} s){context}"
        grpc.aio.AioRpcError.__init__(self, grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                      message, None)
        self.args = (message,)
        self.target, self.kind, self.cause, self.waited_s = target, kind, cause, waited_s

    def __str__(self) -> str:
        return self.args[0]


def unreachable_cause(details: str) -> tuple[str, str]:
    """(kind, one-line cause) of an UNAVAILABLE error's details from a channel that could not connect."""
    text = " ".join((details or "").split())
    if "Connection refused" in text:
        return "refused", "connection refused (nothing listens on that port)"
    if "errors resolving" in text or "lookup failed" in text:
        return "dns", f"the host name does not resolve ({text.rstrip(']').rsplit(':', 1)[-1].strip()})"
    if "handshake" in text.lower() or "SSL" in text or "TLS" in text:
        why = re.search(r"(WRONG_VERSION_NUMBER|CERTIFICATE_VERIFY_FAILED|certificate verify failed|"
                        r"Hostname Verification Check failed)", text)
        return "tls", "the TLS handshake failed" + (f" ({why.group(1)})" if why else "")
    if "last error:" in text:  # "failed to connect to all addresses; last error: UNKNOWN: ipv4:...: why"
        text = text.rsplit("last error:", 1)[1].rsplit(": ", 1)[-1]
    return "other", text[:200] or "no connection"


_SCHEMES = ("dns:", "unix:", "unix-abstract:", "ipv4:", "ipv6:", "vsock:")


def check_target(target: str) -> str:
    """The target, if it can be a server address: HOST:PORT, [IPv6]:PORT, or a gRPC URI (dns:, unix:, ...).
    Raises ValueError naming the bad address otherwise."""
    if not isinstance(target, str) or target.startswith(_SCHEMES) or "://" in target:
        return target
    example = "expected HOST:PORT, e.g. 127.0.0.1:50051 or [::1]:50051"
    host, sep, port = target.rpartition(":")
    if not sep:
        raise ValueError(f"bad server address {target!r}: no port; {example}")
    if not host:
        raise ValueError(f"bad server address {target!r}: no host; {example}")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad server address {target!r}: port {port!r} is not a number from 1 to 65535; {example}")
    if host.startswith("["):
        ok = host.endswith("]") and re.fullmatch(r"[0-9A-Fa-f:.%a-zA-Z]+", host[1:-1]) is not None
    else:
        ok = re.fullmatch(r"[A-Za-z0-9_.-]+", host) is not None
    if not ok:
        raise ValueError(f"bad server address {target!r}: {host!r} is not a host name or IP address; {example}")
    return target


@dataclass(frozen=True)
class RetryPolicy:
    """How long the client keeps trying. The backoff also paces the channel's own retries of unary calls
    (streamret/grpc_transport.py: at most 5 attempts of an idempotent RPC that failed with UNAVAILABLE)."""

    timeout_s: float = 60.0  # give up when one operation has been failing this long
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 2.0
    # give up sooner when the server cannot be reached at all (refused, unresolvable, TLS failing, gone):
    # after this long without a connection; None: timeout_s
    connect_timeout_s: float | None = None

    async def sleeps(self) -> AsyncIterator[None]:
        """Yield after each backoff sleep, until timeout_s has passed."""
        loop = asyncio.get_running_loop()
        deadline, delay = loop.time() + self.timeout_s, self.initial_backoff_s
        while loop.time() + delay <= deadline:
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, self.max_backoff_s)
            yield


@dataclass(frozen=True)
class Deadlines:
    """Seconds each kind of call may run (gRPC deadlines: past one the call fails with DEADLINE_EXCEEDED and the
    server drops work it has not started). None: no deadline."""

    unary_s: float | None = 30.0  # open, embedding, close, fork, export, import, model info
    summarize_s: float | None = 120.0  # a generative summary decodes tokens
    batch_s: float | None = 900.0  # one EmbedTable or AppendEvents call: long texts on a CPU take minutes
    # an Append call lives as long as its stream, so it has no deadline; instead, while chunks wait for an ack,
    # a server silent this long counts as gone: the call is dropped and the stream resumed (as after UNAVAILABLE)
    ack_idle_s: float | None = 300.0

    def __post_init__(self):
        for name in ("unary_s", "summarize_s", "batch_s", "ack_idle_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"Deadlines.{name} must be > 0 seconds or None (no deadline), got {value!r}")


class _Ledger:
    """One stream's chunks on this client: numbering, and the chunks not yet durable on the server."""

    def __init__(self, next_seq: int, max_kept_bytes: int):
        self.next_seq = next_seq
        self.kept: OrderedDict[int, tuple[bytes, bool, bool]] = OrderedDict()  # seq -> (data, flush, durable)
        self.kept_bytes = 0
        self.max_kept_bytes = max_kept_bytes
        self.floor = next_seq - 1  # chunks <= floor are forgotten; resuming below it is impossible
        self.acked = next_seq - 1
        self.to_resend: list[tuple[int, bytes, bool, bool]] = []
        self.last_error = ""  # the last retryable refusal, for the error when retries run out

    def add(self, data: bytes, flush: bool, durable: bool) -> int:
        seq, self.next_seq = self.next_seq, self.next_seq + 1
        self.kept[seq] = (data, flush, durable)
        self.kept_bytes += len(data)
        return seq

    def on_ack(self, ack: pb.AppendResponse) -> None:
        self.acked = max(self.acked, ack.seq)
        self.forget(ack.durable_seq)
        # Acked chunks past the memory bound are dropped too: a resume can then only start after them.
        while self.kept_bytes > self.max_kept_bytes and self.kept and next(iter(self.kept)) <= self.acked:
            self.forget(next(iter(self.kept)))

    def forget(self, upto: int) -> None:
        while self.kept and next(iter(self.kept)) <= upto:
            seq, (data, _, _) = self.kept.popitem(last=False)
            self.kept_bytes -= len(data)
            self.floor = max(self.floor, seq)

    def resume(self, info: pb.OpenStreamResponse) -> None:
        """Plan the resend after a reconnect: the server holds everything up to info.applied_seq (after a
        restart that is its durable_seq), so the kept chunks after it go again."""
        if info.applied_seq < self.floor:
            raise ResumeError(f"stream {info.stream_id!r}: the server resumes at chunk {info.applied_seq + 1} but "
                              f"this client kept chunks only from {self.floor + 1}; raise max_kept_bytes or make "
                              "the server checkpoint more often")
        self.forget(info.durable_seq)
        self.acked = info.applied_seq
        self.to_resend = [(seq, *kept) for seq, kept in self.kept.items() if seq > info.applied_seq]
        # A chunk that asked for a durable record, applied but not durable (its record could not be written):
        # the newest one goes again, and the server, which acks it as a duplicate, tries the write again.
        asked = [seq for seq, (_, _, durable) in self.kept.items() if durable and seq <= info.applied_seq]
        if asked:
            self.to_resend.insert(0, (asked[-1], *self.kept[asked[-1]]))

    @property
    def unacked(self) -> int:
        return self.next_seq - 1 - self.acked


def _bytes(chunk: Chunk) -> bytes:
    return chunk.encode("utf-8") if isinstance(chunk, str) else bytes(chunk)


class _Source:
    """An async iterator that survives the cancellation of a reader: an item being fetched when an Append
    call breaks is handed to the next call instead of being lost inside the caller's generator."""

    def __init__(self, it: AsyncIterator):
        self.it = it
        self.pending: asyncio.Future | None = None

    async def next(self):
        if self.pending is None:
            self.pending = asyncio.ensure_future(anext(self.it))
        item = await asyncio.shield(self.pending)  # raises StopAsyncIteration at the end
        self.pending = None
        return item


async def _numbered(chunks: Iterable[Chunk] | AsyncIterable[Chunk], flush: bool, durable: bool,
                    check: Utf8Check | None = None, new: bool = False) -> AsyncIterator[tuple[bytes, bool, bool]]:
    """(data, flush, durable) for each chunk, then an empty last chunk that flushes and/or asks for a
    durable record, if either is wanted. With `check`, a chunk that is not UTF-8 text raises InvalidText
    before it is sent, and so does a flush that ends a `new` stream without a byte."""
    async def each() -> AsyncIterator[bytes]:
        if isinstance(chunks, AsyncIterable):
            async for c in chunks:
                yield _bytes(c)
        else:
            for c in chunks:
                yield _bytes(c)

    async for data in each():
        if check is not None:
            check.feed(data)
        yield data, False, False
    if check is not None and flush and new and check.offset == 0:
        raise InvalidText(f"{check.name} is empty: nothing to embed")
    if flush or durable:
        yield b"", flush, durable


async def _all_or_first_error(coros: list) -> None:
    """Run the coroutines; on the first error cancel the others and raise it (not an ExceptionGroup)."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class AsyncClient:
    def __init__(self, target: str, *, token: str | None = None, tls: bool = False,
                 root_certificates: bytes | None = None, client_cert: bytes | None = None,
                 client_key: bytes | None = None, max_message_bytes: int = 128 * _MiB,
                 retry: RetryPolicy | None = None, deadlines: Deadlines | None = None, window: int = 256,
                 max_kept_bytes: int = 256 * _MiB):
        self.target = check_target(target)
        self.retry = retry or RetryPolicy()
        self.deadlines = deadlines or Deadlines()
        self.channel_options = grpc_transport.client_options(max_message_bytes, self.retry.initial_backoff_s,
                                                             self.retry.max_backoff_s)
        if (client_cert is None) != (client_key is None):
            raise ValueError("mutual TLS needs both client_cert and client_key (PEM bytes), or neither")
        if tls or root_certificates is not None or client_cert is not None:
            creds = grpc.ssl_channel_credentials(root_certificates=root_certificates, private_key=client_key,
                                                 certificate_chain=client_cert)
            self._channel = grpc.aio.secure_channel(target, creds, options=self.channel_options)
        else:
            self._channel = grpc.aio.insecure_channel(target, options=self.channel_options)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.streams = pb_grpc.StreamRetStub(self._channel)
        self.batch = pb_grpc.BatchStub(self._channel)
        stubs = {grpc_transport.SERVICE: self.streams, grpc_transport.BATCH_SERVICE: self.batch}
        self._idempotent = {getattr(stubs[service], rpc) for service, rpc in grpc_transport.IDEMPOTENT_UNARY}
        self.window = window
        self.max_kept_bytes = max_kept_bytes
        self._max_message_bytes = max_message_bytes
        self._ledgers: dict[str, _Ledger] = {}
        self._text_checks: dict[str, Utf8Check] = {}  # per stream: UTF-8 across chunk cuts, bytes sent

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def _reconnect(self, error: grpc.aio.AioRpcError, context: str = "") -> bool:
        """After an UNAVAILABLE error: when the channel has no connection, wait for one for at most
        retry.connect_timeout_s and return True once connected (retry at once), or raise ServerUnreachable
        naming the cause. False when the channel is connected (a draining or busy server said UNAVAILABLE:
        back off as usual)."""
        if self._channel.get_state(try_to_connect=True) == grpc.ChannelConnectivity.READY:
            return False
        limit = self.retry.timeout_s if self.retry.connect_timeout_s is None else self.retry.connect_timeout_s
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await asyncio.wait_for(self._channel.channel_ready(), timeout=max(limit, 0.0))
        except TimeoutError:
            kind, cause = unreachable_cause(error.details())
            raise ServerUnreachable(self.target, kind, cause, loop.time() - started, context) from error
        return True

    async def _unary(self, method, request, timeout_s: float | None = None):
        """One call under its deadline (default: Deadlines.unary_s), retrying UNAVAILABLE for retry.timeout_s:
        at once when a lost connection comes back (see _reconnect), else with backoff (a draining or busy
        server; for an idempotent RPC after the channel's own quick attempts, grpc_transport.py). Except a call
        that changes state (CloseStream, ForkStream, ImportState) sent on a connection that was up: it may
        have run, so its UNAVAILABLE goes to the caller."""
        timeout_s = self.deadlines.unary_s if timeout_s is None else timeout_s
        once = method not in self._idempotent
        backoff, give_up = None, None
        while True:
            sent_on_a_connection = once and self._channel.get_state() == grpc.ChannelConnectivity.READY
            try:
                return await method(request, metadata=self._metadata, timeout=timeout_s)
            except grpc.aio.AioRpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE or sent_on_a_connection:
                    raise
                last = e
            now = asyncio.get_running_loop().time()
            if backoff is None:
                backoff, give_up = aiter(self.retry.sleeps()), now + self.retry.timeout_s
            if await self._reconnect(last):
                if now > give_up:  # a connection that keeps dropping: bounded like the backoff
                    raise last
                continue
            try:
                await anext(backoff)
            except StopAsyncIteration:
                raise last from None

    # --- streams ----------------------------------------------------------------------------------

    async def open(self, stream_id: str, *, create_if_missing: bool = True,
                   labels: dict[str, str] | None = None) -> pb.OpenStreamResponse:
        """Open a stream; the next chunk this client appends to it is applied_seq + 1."""
        info = await self._unary(self.streams.OpenStream, pb.OpenStreamRequest(
            stream_id=stream_id, create_if_missing=create_if_missing, labels=labels or {}))
        ledger = self._ledgers.get(stream_id)
        if ledger is None or ledger.next_seq <= info.applied_seq:
            self._ledgers[stream_id] = _Ledger(info.applied_seq + 1, self.max_kept_bytes)
        return info

    async def stream(self, stream_id: str, chunks: Iterable[Chunk] | AsyncIterable[Chunk], *, flush: bool = True,
                     durable: bool = True, on_ack: Callable[[pb.AppendResponse], None] | None = None,
                     check_text: bool = True) -> pb.AppendResponse | None:
        """Append every chunk (opening the stream if needed) and return the last ack.

        flush: after the last chunk, send an empty flushing chunk so the unfinished tail is read too.
        durable: the last chunk asks the server for a durable record before its ack, so that everything
            sent is durable when this returns (the last ack's durable_seq is its seq), whatever the
            server's durability policy; a server without a durable store cannot, and its ack says so.
            When the server keeps failing to write the record, this raises TimeoutError.
        on_ack: called with each ack of a chunk applied (or a duplicate), e.g. to move a progress bar.
        check_text: refuse, with InvalidText (a ValueError) naming the stream and the byte offset, a chunk that
            is not UTF-8 text (or holds a NUL byte) before sending it, and a flush that would leave a new stream
            empty (streamret/textcheck.py). Chunks may still cut a character anywhere. False sends any bytes:
            the server then reads each invalid byte as U+FFFD.
        """
        check, new = None, False
        if check_text:
            if stream_id not in self._ledgers:
                await self.open(stream_id)
            new = self._ledgers[stream_id].next_seq == 1 and stream_id not in self._text_checks
            check = self._text_checks.setdefault(stream_id, Utf8Check(f"stream {stream_id!r}"))
        return await self._append(stream_id, _Source(_numbered(chunks, flush, durable, check, new)), on_ack)

    async def append(self, stream_id: str, data: Chunk, *, flush: bool = False, durable: bool = False
                     ) -> pb.AppendResponse:
        """Append one chunk and return its ack (durable: its record is written before the ack)."""

        async def one():
            yield _bytes(data), flush, durable

        return await self._append(stream_id, _Source(one()), None)

    async def _append(self, stream_id: str, source: _Source, on_ack) -> pb.AppendResponse | None:
        if stream_id not in self._ledgers:
            await self.open(stream_id)
        ledger = self._ledgers[stream_id]
        last: list[pb.AppendResponse | None] = [None]
        backoff, mark = None, None
        while not await self._append_call(stream_id, ledger, source, last, on_ack):
            # The connection broke, the server is draining, or it refused a chunk it may take later
            # (busy, or its durable record could not be written): back off, ask where the stream stands,
            # plan the resend. A server that crashed before the stream's first durable record no longer
            # knows it: it is created again and everything is resent, which the ledger allows only while it
            # still holds chunk 1. The backoff runs on while nothing moves (no chunk newly acked or made
            # durable): a server that keeps refusing (e.g. a full disk) ends this with an error after
            # retry.timeout_s, never with a return as if the chunks were saved.
            if backoff is None or (ledger.acked, ledger.floor) != mark:
                backoff, mark = aiter(self.retry.sleeps()), (ledger.acked, ledger.floor)
            while True:
                try:
                    await anext(backoff)
                except StopAsyncIteration:
                    why = f"; the last refusal: {ledger.last_error}" if ledger.last_error else ""
                    raise TimeoutError(f"stream {stream_id!r}: no progress for {self.retry.timeout_s} s{why}; "
                                       f"chunks up to {ledger.floor} are durable on the server") from None
                try:
                    info = await self.streams.OpenStream(
                        pb.OpenStreamRequest(stream_id=stream_id, create_if_missing=True), metadata=self._metadata,
                        timeout=self.deadlines.unary_s)
                except grpc.aio.AioRpcError as e:
                    if e.code() != grpc.StatusCode.UNAVAILABLE:
                        raise
                    ledger.last_error = f"{e.code().name}: {e.details()}"
                    await self._reconnect(e, f"; stream {stream_id!r}: chunks up to {ledger.floor} are durable "
                                             "on the server")
                    continue
                ledger.resume(info)
                break
        return last[0]

    async def _append_call(self, stream_id: str, ledger: _Ledger, source: _Source, last: list, on_ack) -> bool:
        """One Append call: the planned resend, then new chunks from `source`. True when everything
        is sent and acked; False when the stream must resync."""
        call = self.streams.Append(metadata=self._metadata)  # no deadline: see Deadlines.ack_idle_s
        room = asyncio.Semaphore(self.window)
        resend, ledger.to_resend = ledger.to_resend, []
        source_done = False
        source_failed: list[Exception] = []  # the chunks' source raised (e.g. InvalidText): end the call cleanly

        async def send() -> None:
            nonlocal source_done
            for seq, data, flush, durable in resend:
                await room.acquire()
                await call.write(pb.AppendRequest(stream_id=stream_id, seq=seq, data=data, flush=flush,
                                                  durable=durable))
            while True:
                await room.acquire()
                try:
                    data, flush, durable = await source.next()
                except StopAsyncIteration:
                    source_done = True
                    break
                except Exception as e:  # noqa: BLE001  (raised to the caller once the chunks sent are acked)
                    source_failed.append(e)
                    break
                seq = ledger.add(data, flush, durable)
                await call.write(pb.AppendRequest(stream_id=stream_id, seq=seq, data=data, flush=flush,
                                                  durable=durable))
            await call.done_writing()

        sender = asyncio.create_task(send())
        try:
            while (ack := await self._next_ack(call, ledger)) is not grpc.aio.EOF:
                if ack is None:  # the server went silent with chunks in flight: resume as after a lost connection
                    ledger.last_error = f"no ack for {self.deadlines.ack_idle_s:g} s (Deadlines.ack_idle_s)"
                    return False
                room.release()
                if ack.error_code:
                    if ack.retryable:
                        ledger.last_error = f"chunk {ack.seq}: {ack.error_message}"
                        return False
                    raise ChunkError(ack)
                ledger.on_ack(ack)
                last[0] = ack
                if on_ack is not None:
                    on_ack(ack)
            await sender  # re-raises what the sender hit
            if source_failed:
                raise source_failed[0]
            return source_done and ledger.unacked == 0
        except grpc.aio.AioRpcError as e:
            if source_failed:
                raise source_failed[0] from None
            if not _call_broke(e):
                raise
            return source_done and ledger.unacked == 0  # the call broke after its last ack: nothing to redo
        finally:
            sender.cancel()
            call.cancel()
            # awaited, so that no task is left pending when the caller's loop closes (asyncio warns then)
            await asyncio.gather(sender, return_exceptions=True)

    async def _next_ack(self, call, ledger: _Ledger):
        """The call's next ack, grpc.aio.EOF at its end, or None when none came for Deadlines.ack_idle_s while
        chunks were waiting for one (a wait for the caller's next chunk is not timed)."""
        read = asyncio.ensure_future(call.read())
        try:
            while True:
                done, _ = await asyncio.wait({read}, timeout=self.deadlines.ack_idle_s)
                if done:
                    return read.result()
                if ledger.unacked > 0:
                    return None
        finally:
            read.cancel()
            await asyncio.gather(read, return_exceptions=True)

    async def model_info(self) -> pb.GetModelInfoResponse:
        """The served model (name, fingerprint, embedding size, tokenizer, dtype, device) and the limits."""
        return await self._unary(self.streams.GetModelInfo, pb.GetModelInfoRequest())

    async def embedding(self, stream_id: str, role: str = "query") -> pb.GetEmbeddingResponse:
        """The stream's embedding in `role`: "query" (as the model computes it) or "document" (the model's
        document map applied; FAILED_PRECONDITION from a model without one). The answer's `role` says which."""
        number = role_number(role)
        out = await self._unary(self.streams.GetEmbedding, pb.GetEmbeddingRequest(stream_id=stream_id, role=number))
        _check_served(self.target, role, out.role, f"GetEmbedding of stream {stream_id!r}", out)
        return out

    async def embedding_array(self, stream_id: str, role: str = "query") -> np.ndarray:
        return np.asarray((await self.embedding(stream_id, role)).values, dtype=np.float32)

    async def summarize(self, stream_id: str, *, max_segments: int = 5, generative: bool = False,
                        max_new_tokens: int = 64) -> pb.SummarizeResponse:
        # extractive leaves the mode unset: every server reads that as extractive (older ones refuse MODE_EXTRACTIVE)
        mode = pb.SummarizeRequest.MODE_GENERATIVE if generative else pb.SummarizeRequest.MODE_UNSPECIFIED
        return await self._unary(self.streams.Summarize, pb.SummarizeRequest(
            stream_id=stream_id, max_segments=max_segments, mode=mode, max_new_tokens=max_new_tokens),
            self.deadlines.summarize_s)

    async def close_stream(self, stream_id: str, *, keep_state: bool = False, max_segments: int = 5,
                           role: str = "query") -> pb.CloseStreamResponse:
        """Flush, close, and return the final embedding (in `role`, as `embedding`) and summary. A role the
        server refuses leaves the stream open; one an older server ignores raises RoleIgnored after the close,
        with the answer attached."""
        number = role_number(role)
        out = await self._unary(self.streams.CloseStream, pb.CloseStreamRequest(
            stream_id=stream_id, keep_state=keep_state, max_segments=max_segments, role=number))
        self._ledgers.pop(stream_id, None)
        self._text_checks.pop(stream_id, None)
        _check_served(self.target, role, out.embedding.role, f"CloseStream of stream {stream_id!r}, which is closed",
                      out)
        return out

    async def fork(self, source_id: str, new_id: str) -> pb.ForkStreamResponse:
        return await self._unary(self.streams.ForkStream, pb.ForkStreamRequest(source_id=source_id, new_id=new_id))

    async def export_state(self, stream_id: str) -> bytes:
        return (await self._unary(self.streams.ExportState, pb.ExportStateRequest(stream_id=stream_id))).data

    async def import_state(self, stream_id: str, data: bytes) -> pb.ImportStateResponse:
        return await self._unary(self.streams.ImportState,
                                 pb.ImportStateRequest(stream_id=stream_id, state=pb.ExportStateResponse(data=data)))

    # --- batches ----------------------------------------------------------------------------------

    async def embed_table(self, table: pa.Table, role: str = "query") -> pa.Table:
        """Embed each row of a table with columns `id` and `text` (see Batch.EmbedTable); the `embedding` column
        in `role`, as `embedding`."""
        number = role_number(role)
        out = await self._unary(self.batch.EmbedTable, pb.EmbedTableRequest(arrow_ipc=table_to_ipc(table),
                                                                            role=number), self.deadlines.batch_s)
        result = table_from_ipc(out.arrow_ipc)
        _check_served(self.target, role, out.role, "EmbedTable", result)
        return result

    async def encode(self, texts: str | Iterable[str], batch_size: int = DEFAULT_BATCH_SIZE,
                     show_progress_bar: bool = False, normalize: bool = True, role: str = "query") -> np.ndarray:
        """One embedding per whole text, of any length: float32 [len(texts), dim] ([dim] for a single str).

        Like sentence-transformers' `encode`, served by the server's engine: texts go in tables of up to
        `batch_size` texts (and at most a quarter of max_message_bytes) through Batch.EmbedTable, two tables
        in flight so the server's engine always has the next one; a text too large for one message is
        streamed as a temporary stream, which is closed again even when the call fails. Every vector equals
        GetEmbedding of the same text streamed in one chunk. An empty list gives shape (0, dim), an empty
        text the zero vector; normalize=True rescales rows to unit length (the model's embeddings already
        are). role: "query" (the default: queries, passages) or "document" (whole documents for an index: the
        model's document map applied; an empty text stays the zero vector), as `embedding`. Raises
        InvalidArgument for an item that is not a str or a text the server could not embed, ValueError for an
        unknown role.
        """
        data, single = check_texts(texts)
        check_batch_size(batch_size)
        role_number(role)  # (raises before anything is sent)
        if not any(data):  # nothing to embed: only the vector size is needed
            return finish(np.zeros((len(data), await self._embedding_dim()), np.float32), single, normalize)
        budget = max(1, self._max_message_bytes // 4)
        batches: list[list[int]] = []  # indices of non-empty texts that fit in one message, in order
        large: list[int] = []  # texts streamed on their own
        size = 0
        for i, d in enumerate(data):
            if not d:
                continue
            if len(d) > budget:
                large.append(i)
                continue
            if not batches or len(batches[-1]) >= batch_size or size + len(d) > budget:
                batches.append([])
                size = 0
            batches[-1].append(i)
            size += len(d)
        out: list[np.ndarray | None] = [None] * len(data)
        bar = progress_bar(len(data), show_progress_bar)
        gate = asyncio.Semaphore(2)

        async def run_batch(rows: list[int]) -> None:
            async with gate:
                table = pa.table({"id": pa.array(rows, pa.int64()), "text": pa.array([data[i] for i in rows],
                                                                                      pa.binary())})
                vectors = vectors_of(await self.embed_table(table, role), rows)
            for row, i in enumerate(rows):
                out[i] = vectors[row]
            if bar is not None:
                bar.update(len(rows))

        try:
            if bar is not None:
                bar.update(sum(1 for d in data if not d))
            await _all_or_first_error([run_batch(rows) for rows in batches])
            for i in large:
                out[i] = await self._encode_streamed(data[i], i, min(256 * 1024, budget), role)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        zero = np.zeros(next(len(v) for v in out if v is not None), np.float32)
        return finish(np.stack([zero if v is None else v for v in out]), single, normalize)

    async def _embedding_dim(self) -> int:
        """The server's embedding size, read from the schema of an empty EmbedTable answer."""
        empty = pa.table({"id": pa.array([], pa.int64()), "text": pa.array([], pa.string())})
        return embedding_dim(await self.embed_table(empty))

    async def _encode_streamed(self, data: bytes, index: int, step: int, role: str = "query") -> np.ndarray:
        """A text too large for one message: a temporary stream of `step`-byte chunks, always closed again."""
        stream_id = f"encode-{uuid.uuid4().hex}-{index}"
        try:
            await self.stream(stream_id, [data[i:i + step] for i in range(0, len(data), step)])
            return await self.embedding_array(stream_id, role)
        finally:
            try:
                await self.close_stream(stream_id, max_segments=0)
            except grpc.aio.AioRpcError:
                self._ledgers.pop(stream_id, None)  # never opened, or the server is gone: the first error matters

    async def append_events(self, table: pa.Table) -> pa.Table:
        """Append rows `stream_id, seq, text`; return one ack row per event."""
        call = self.batch.AppendEvents(metadata=self._metadata, timeout=self.deadlines.batch_s)
        await call.write(pb.AppendEventsRequest(arrow_ipc=table_to_ipc(table)))
        await call.done_writing()
        out = [table_from_ipc(p.arrow_ipc) async for p in call]
        return pa.concat_tables(out)


class Client:
    """The blocking twin of AsyncClient: the same methods, run on a private event loop thread."""

    def __init__(self, target: str, **kwargs):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="streamret-client", daemon=True)
        self._thread.start()
        self._async = self._run(self._make(target, kwargs))

    @staticmethod
    async def _make(target: str, kwargs: dict) -> AsyncClient:
        return AsyncClient(target, **kwargs)

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __getattr__(self, name: str):
        attr = getattr(AsyncClient, name, None)
        if attr is None or name.startswith("_") or not inspect.iscoroutinefunction(attr):
            raise AttributeError(name)
        method = getattr(self._async, name)
        return lambda *args, **kwargs: self._run(method(*args, **kwargs))

    def encode(self, texts: str | Iterable[str], batch_size: int = DEFAULT_BATCH_SIZE,
               show_progress_bar: bool = False, normalize: bool = True, role: str = "query") -> np.ndarray:
        """AsyncClient.encode, blocking: float32 [len(texts), dim], one whole-document embedding per text."""
        return self._run(self._async.encode(texts, batch_size=batch_size, show_progress_bar=show_progress_bar,
                                            normalize=normalize, role=role))

    def close(self) -> None:
        if self._loop.is_running():
            self._run(self._close_and_drain())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    async def _close_and_drain(self, wait_s: float = 1.0) -> None:
        """Close the channel, then let the loop finish what gRPC still runs on it (a failed call's status is
        handled by a task of its own, which may not have run yet): a loop stopped with it pending prints "Task
        was destroyed but it is pending!" on stderr when it is collected, after the one-line error a command
        printed. What has not finished within wait_s is cancelled."""
        await self._async.close()
        pending = asyncio.all_tasks() - {asyncio.current_task()}
        if pending:
            _, late = await asyncio.wait(pending, timeout=wait_s)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=wait_s)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
