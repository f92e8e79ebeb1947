"""The engine as the service uses it: per-tenant stream names, limits, and async calls.

Servicers translate protobuf and Arrow; this class does everything between them and the engine:
it maps (tenant, stream id) to the engine's id, enforces the limits, holds the registry of open
streams, runs blocking engine calls on a thread pool so the event loop never waits on the model,
and rewrites engine ids in error messages back into the client's ids.

It logs one line at info level as a stream opens on this server (by OpenStream, its first chunk, a fork
or an import) and one as it closes, never per chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..batch.arrow_table import Stop, embed_table
from ..engine.api import EngineAPI
from ..engine.config import StreamInfo, Summary
from ..errors import (
    DamagedRecord,
    FailedPrecondition,
    ModelMismatch,
    NotFound,
    ResourceExhausted,
    SeqGap,
    StreamRetError,
    TooBusy,
    Unavailable,
)
from .auth import Caller, client_id, scrub
from .deadlines import call_deadline, check_deadline
from .limits import ServiceLimits, StreamRegistry, TenantCalls
from .metrics import ServiceMetrics
from .status import code_number, status_of

log = logging.getLogger("streamret.service")

_BATCH_MARK = "\x1e"  # batch temporaries: "<tenant>\x1f\x1e<uuid>-<row>", never a valid client id
# Chunks at least this large are submitted from the thread pool: submitting tokenizes, which for a real
# tokenizer takes about a millisecond per 4 KiB, and the event loop must not stop for it. Smaller ones
# are submitted on the loop, where a thread hop would cost more than the tokenizing.
OFFLOAD_CHUNK_BYTES = 16 * 1024


@dataclass(slots=True)
class ChunkAck:
    """One chunk's outcome, in the client's ids (the fields of AppendResponse and of an AppendEvents row)."""

    stream_id: str
    seq: int
    applied_seq: int = 0
    durable_seq: int = 0
    tokens: int = 0
    duplicate: bool = False
    error_code: int = 0
    error_message: str = ""
    retryable: bool = False
    segment_embedding: np.ndarray | None = None


class PendingAck:
    """A submitted chunk's ack to come; `await` it for the ChunkAck. Costs no task and no coroutine per chunk,
    and a pending ack nobody awaits (the call went away) leaves nothing behind."""

    __slots__ = ("_finish", "_ready", "_settled")

    def __init__(self, ready: ChunkAck | None = None, settled: asyncio.Future | None = None, finish=None):
        # settled: an AckRelay future whose result is the engine's outcome, (ack, None) or (None, error);
        # finish(outcome) makes the ChunkAck, or (for a chunk that asked for its segment's embedding) returns
        # the coroutine that does
        self._ready, self._settled, self._finish = ready, settled, finish

    def __await__(self):
        if self._ready is not None:
            return self._ready
        outcome = yield from self._settled
        ack = self._finish(outcome)
        if not isinstance(ack, ChunkAck):
            ack = yield from ack.__await__()
        return ack


class TenantEngine:
    def __init__(self, engine: EngineAPI, limits: ServiceLimits, metrics: ServiceMetrics, *, threads: int = 32,
                 batch_threads: int = 4):
        self.engine = engine
        self.limits = limits
        self.metrics = metrics
        # ShardedEngine's submit without a Future per chunk: its acks come to the AckRelay a batch at a time, and
        # the chunks of one turn of the loop go to the engine processes together (hold, then release_held)
        self._submit_to = getattr(engine, "submit_append_to", None)
        self.registry = StreamRegistry(limits.max_streams_per_tenant)
        self._relays: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # event loop -> its AckRelay
        self._last_relay: AckRelay | None = None
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="streamret-rpc")
        # Batch requests hold a thread for a whole table: their own pool, so they never hold up the
        # short calls (open, embedding, summary) behind them.
        self._batch_pool = ThreadPoolExecutor(max_workers=batch_threads, thread_name_prefix="streamret-batch")
        self.batch_calls = TenantCalls(limits.max_batch_calls_per_tenant, "batch tables in work",
                                       "wait for one to finish, or raise the server's --max-batch-calls-per-tenant")
        self.imports = TenantCalls(limits.max_imports_per_tenant, "state imports in work",
                                   "wait for one to finish, or raise the server's --max-imports-per-tenant")

    async def _call(self, fn, *args, _pool: ThreadPoolExecutor | None = None, **kwargs):
        deadline = call_deadline()

        def run():  # on the RPC thread: a call whose deadline passed while it waited for one does nothing
            check_deadline(deadline, f"engine.{getattr(fn, '__name__', 'call')}")
            return fn(*args, **kwargs)

        return await asyncio.get_running_loop().run_in_executor(_pool or self._pool, run)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)
        self._batch_pool.shutdown(wait=True)

    # ------------------------------------------------------------------------------------------
    # streams

    async def open(self, caller: Caller, stream_id: str, create: bool, labels: dict[str, str]):
        """(engine StreamInfo, labels) of the caller's stream, creating it if asked and allowed."""
        eid = caller.engine_id(stream_id)
        labels = self.limits.check_labels(labels)
        if eid not in self.registry and not await self._call(self.engine.exists, eid):
            if not create:  # said before a place in the tenant's limit is taken (a full tenant would hear "limit")
                raise NotFound(f"stream {stream_id!r} does not exist; open it with create_if_missing=true")
            caller.require_write("creating a stream")
        info = await self._hold(caller, eid, lambda: self.engine.open(eid, create_if_missing=create,
                                                                         group=caller.tenant))
        return info, self.registry.touch(caller.tenant, eid, labels)

    async def submit_append(self, caller: Caller, stream_id: str, seq: int, data: bytes, flush: bool,
                            want_segment: bool = False, durable: bool = False) -> PendingAck:
        """Queue one chunk; return its PendingAck (the ack carries any per-chunk problem).

        Raises only for a bad stream id (a protocol error for Append). A stream this server does not
        hold yet is opened (created if missing) first, within the tenant's limit. When the engine is
        full this waits (up to limits.busy_wait_s) for room instead of failing at once: the caller stops
        reading its requests meanwhile, which is the backpressure a client feels.
        """
        eid = caller.engine_id(stream_id)
        if len(data) > self.limits.max_chunk_bytes:
            return self.failed_ack(caller, stream_id, seq, ResourceExhausted(
                f"chunk of {len(data)} bytes exceeds the server's limit of {self.limits.max_chunk_bytes}; "
                "send smaller chunks"))
        if eid not in self.registry:
            try:  # only a stream's first chunk creates it: a refused chunk must leave nothing behind
                await self._hold(caller, eid, lambda: self.engine.open(eid, create_if_missing=seq == 1,
                                                                             group=caller.tenant))
            except NotFound:
                return self.failed_ack(caller, stream_id, seq, SeqGap(eid, seq, 1))
            except Exception as e:  # noqa: BLE001
                return self.failed_ack(caller, stream_id, seq, e)
        deadline, pause = None, 0.001
        while True:
            try:
                if self._submit_to is not None:  # (it tokenizes nothing in this process: no thread hop either)
                    relay = self._relay()
                    settled = relay.expect()
                    self._submit_to(relay.arrive, settled, eid, seq, data, flush=flush, durable=durable,
                                    group=caller.tenant, hold=True)
                    relay.after_turn(self.engine.release_held)
                elif len(data) >= OFFLOAD_CHUNK_BYTES:
                    fut = await self._call(self.engine.submit_append, eid, seq, data, flush=flush, durable=durable,
                                           group=caller.tenant)
                    settled = self._relay().follow(fut)
                else:
                    fut = self.engine.submit_append(eid, seq, data, flush=flush, durable=durable, group=caller.tenant)
                    settled = self._relay().follow(fut)
                break
            except TooBusy as e:
                now = time.monotonic()
                deadline = deadline or now + self.limits.busy_wait_s
                if now >= deadline:
                    self.metrics.busy_refusals.inc()
                    return self.failed_ack(caller, stream_id, seq, e)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.05)
            except Exception as e:  # noqa: BLE001  (per-chunk problems go into the ack)
                return self.failed_ack(caller, stream_id, seq, e)
        if want_segment:
            return PendingAck(settled=settled,
                              finish=lambda outcome: self._with_segment(caller, eid, stream_id, seq, outcome))
        return PendingAck(settled=settled, finish=functools.partial(self._finish_ack, caller, eid, stream_id, seq))

    def _relay(self) -> AckRelay:
        """The AckRelay of the running loop (one server loop, in practice: the last one is kept at hand)."""
        loop = asyncio.get_running_loop()
        relay = self._last_relay
        if relay is None or relay.loop is not loop:
            relay = self._relays.get(loop)
            if relay is None:
                relay = self._relays[loop] = AckRelay(loop)
            self._last_relay = relay
        return relay

    def _finish_ack(self, caller: Caller, eid: str, stream_id: str, seq: int, outcome: tuple) -> ChunkAck:
        """The ChunkAck of a chunk whose engine outcome is (ack, None) or (None, error) (AckRelay)."""
        ack, error = outcome
        if error is not None:
            if isinstance(error, CancelledError):  # the engine dropped the chunk's future: the call ends as cancelled
                raise asyncio.CancelledError
            return self._error_ack(caller, stream_id, seq, error)
        self.registry.touch(caller.tenant, eid)
        return ChunkAck(stream_id, seq, int(ack.applied_seq), int(ack.durable_seq), int(ack.tokens),
                        bool(ack.duplicate))

    async def _with_segment(self, caller: Caller, eid: str, stream_id: str, seq: int, outcome: tuple) -> ChunkAck:
        out = self._finish_ack(caller, eid, stream_id, seq, outcome)
        if out.error_code:
            return out
        try:
            out.segment_embedding = await self._newest_segment_embedding(eid)
        except Exception as e:  # noqa: BLE001
            return self._error_ack(caller, stream_id, seq, e)
        return out

    async def _newest_segment_embedding(self, eid: str) -> np.ndarray | None:
        segments = await self._call(self.engine.segments, eid)
        newest = max(segments, key=lambda s: s.end_byte, default=None)
        return None if newest is None or newest.embedding is None else np.asarray(newest.embedding, np.float32)

    def _error_ack(self, caller: Caller, stream_id: str, seq: int, exc: BaseException) -> ChunkAck:
        code, message = status_of(exc, method="Append")
        ack = ChunkAck(stream_id, seq, error_code=code_number(code), error_message=scrub(message, caller.tenant))
        if isinstance(exc, SeqGap):
            ack.applied_seq = exc.expected - 1
        ack.retryable = isinstance(exc, SeqGap | TooBusy | Unavailable)
        return ack

    def failed_ack(self, caller: Caller, stream_id: str, seq: int, exc: BaseException) -> PendingAck:
        """The error ack for `exc`, ready at once (what submit_append returns for a refused chunk)."""
        return PendingAck(ready=self._error_ack(caller, stream_id, seq, exc))

    async def info(self, caller: Caller, stream_id: str):
        return await self._call(self.engine.info, caller.engine_id(stream_id))

    async def embedding(self, caller: Caller, stream_id: str, role: str = "query"):
        """(embedding float32 [dim] in `role`, engine StreamInfo): info is read after the embedding, so
        applied_seq and tokens cover at least every chunk the embedding reflects. The role is checked first
        (engine.check_role: InvalidArgument, or FailedPrecondition for "document" without a document map)."""
        eid = caller.engine_id(stream_id)
        self.engine.check_role(role)
        values = await self._call(self.engine.embedding, eid, role=role)
        info = await self._call(self.engine.info, eid)
        self.registry.touch(caller.tenant, eid)
        return np.asarray(values, dtype=np.float32), info

    async def summarize(self, caller: Caller, stream_id: str, k: int, mode: str, max_new_tokens: int):
        eid = caller.engine_id(stream_id)
        summary = await self._call(self.engine.summarize, eid, k=k, mode=mode, max_new_tokens=max_new_tokens)
        self.registry.touch(caller.tenant, eid)
        return summary

    async def close(self, caller: Caller, stream_id: str, keep_state: bool, k: int, role: str = "query"):
        """Flush the tail, take the final (embedding in `role`, info, summary), then close the stream.

        The role is checked before anything is done: a refused role must not close the stream and lose its
        embedding."""
        caller.require_write("closing a stream")
        eid = caller.engine_id(stream_id)
        self.engine.check_role(role)
        try:
            await self._call(self.engine.flush, eid)
        except (DamagedRecord, ModelMismatch):  # the record cannot be loaded: a tenant can still drop the id
            if keep_state:
                raise
            await self._call(self.engine.close, eid, keep_state=False)  # deletes the record unread
            self.registry.release(eid)
            dim = self.engine.embed_dim
            info = StreamInfo(eid, 0, 0, 0, self.engine.fingerprint)
            return np.zeros(dim, np.float32), info, Summary(eid, 0, [], "")
        values, info = await self.embedding(caller, stream_id, role)
        summary = await self._call(self.engine.summarize, eid, k=k)
        await self._call(self.engine.close, eid, keep_state=keep_state)
        self.registry.release(eid)
        log.info("stream %r of tenant %s closed: applied_seq %d, %d tokens, state %s; %d streams open", stream_id,
                 caller.tenant, info.applied_seq, info.tokens, "kept" if keep_state else "dropped",
                 len(self.registry))
        return values, info, summary

    async def fork(self, caller: Caller, source_id: str, new_id: str):
        caller.require_write("forking a stream")
        src, dst = caller.engine_id(source_id, "source_id"), caller.engine_id(new_id, "new_id")
        return await self._hold(caller, dst, lambda: self.engine.fork(src, dst), how=f"forked from {source_id!r}")

    async def export_state(self, caller: Caller, stream_id: str) -> bytes:
        eid = caller.engine_id(stream_id)
        data = await self._call(self.engine.export_state, eid)
        if len(data) > self.limits.max_message_bytes:
            raise ResourceExhausted(f"the state is {len(data)} bytes, over the server's message limit of "
                                    f"{self.limits.max_message_bytes}; raise --max-message-mb on server and client")
        return data

    async def import_state(self, caller: Caller, stream_id: str, record: Callable[[], bytes]):
        """Import the record that `record()` reads out of the request, within the tenant's limit of imports in
        work (limits.max_imports_per_tenant): it is read (a copy of up to a message's size) only once a
        place is taken, so a tenant's refused imports cost no copy."""
        caller.require_write("importing a state")
        eid = caller.engine_id(stream_id)
        self.imports.take(caller.tenant)
        try:
            data = record()
            return await self._hold(caller, eid, lambda: self.engine.import_state(eid, data), how="imported")
        finally:
            self.imports.give(caller.tenant)

    async def _hold(self, caller: Caller, eid: str, make, how: str = "opened"):
        """Run `make` (an engine call that opens or creates eid) with the stream's place in the tenant's
        limit taken first, and given back if the call fails. Logs the stream `how` it came, when it is new
        on this server."""
        reserved = self.registry.reserve(caller.tenant, eid)
        try:
            info = await self._call(make)
        except BaseException:
            if reserved:
                self.registry.release(eid)
            raise
        self.registry.touch(caller.tenant, eid)
        if reserved:
            log.info("stream %r of tenant %s %s: applied_seq %d, %d tokens; %d streams open", client_id(eid),
                     caller.tenant, how, info.applied_seq, info.tokens, len(self.registry))
        return info

    # ------------------------------------------------------------------------------------------
    # batches and housekeeping

    @contextlib.contextmanager
    def batch_call(self, caller: Caller) -> Iterator[None]:
        """Hold one of the tenant's places for batch work (limits.max_batch_calls_per_tenant) meanwhile."""
        self.batch_calls.take(caller.tenant)
        try:
            yield
        finally:
            self.batch_calls.give(caller.tenant)

    async def embed_table(self, caller: Caller, table: pa.Table, summary_k: int = 5,
                          deadline: float | None = None, role: str = "query") -> pa.Table:
        """Embed a table's rows on a batch thread, in the tenant's fairness group, with no record per row; the
        `embedding` column in `role`, checked before the tenant's place is taken (as `embedding` checks it).

        The work stops feeding the engine when `deadline` (time.monotonic()) passes or the call is cancelled.
        The tenant's place is given back by the thread itself once its chunks are applied and its temporary
        streams closed, so a client that gives up and asks again cannot pile up work behind the server's back.
        """
        self.engine.check_role(role)
        prefix = f"{caller.tenant}\x1f{_BATCH_MARK}{uuid.uuid4().hex}-"
        stop = Stop(deadline)
        self.batch_calls.take(caller.tenant)
        try:
            fut = self._batch_pool.submit(
                embed_table, self.engine, table, summary_k=summary_k, chunk_bytes=self.limits.batch_chunk_bytes,
                max_in_flight=self.limits.batch_in_flight, max_bytes_in_flight=self.limits.batch_bytes_in_flight,
                stream_prefix=prefix, group=caller.tenant, stop=stop, role=role)
        except BaseException:
            self.batch_calls.give(caller.tenant)
            raise
        fut.add_done_callback(lambda _: self.batch_calls.give(caller.tenant))
        try:
            return await asyncio.wrap_future(fut)
        except asyncio.CancelledError:
            stop.cancel()  # the client went away or its deadline passed
            raise

    async def evict_idle(self) -> int:
        """Evict streams idle past limits.idle_evict_s to the durable store; return how many."""
        if not self.limits.idle_evict_s:
            return 0
        evicted = 0
        for eid in self.registry.idle(self.limits.idle_evict_s):
            try:
                await self._call(self.engine.evict, eid)
                evicted += 1
            except NotFound:
                self.registry.release(eid)  # closed behind our back (e.g. by a batch job's cleanup)
            except FailedPrecondition as e:  # no durable store to evict to: stop trying
                log.info("idle eviction is off: %s", e)
                self.limits = dataclasses.replace(self.limits, idle_evict_s=0)
                break
            except StreamRetError as e:
                log.warning("idle eviction of a stream failed: %s", e)
        return evicted


class AckRelay:
    """Hands engine outcomes, known on the engine's threads, to the event loop in batches.

    Each chunk has an asyncio future on the loop (`expect`) that gets its outcome: (ack, None), or (None, error).
    `arrive(pairs)`, from any thread, queues (asyncio future, outcome) pairs and wakes the loop
    (call_soon_threadsafe: a handle and a write to its self-pipe) only when no wakeup is pending already, so an
    engine that finishes many chunks at once wakes the loop once for all of them. An engine that answers in
    batches calls `arrive` itself (ShardedEngine.submit_append_to: no Future per chunk); for one that returns a
    concurrent Future, `follow(fut)` arrives its outcome once it is done. Cancelling the asyncio future (a client
    hung up) leaves the engine's side alone. The asyncio future never holds an exception, so one that nobody
    awaits any more logs nothing.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)  # (held weakly: the relays are kept per loop, and must not keep it alive)
        self._done: deque[tuple[asyncio.Future, tuple]] = deque()
        self._woken = False  # a _deliver is scheduled and has not started
        self._after_turn: list[Callable[[], None]] = []  # to call once this turn of the loop is over

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop()

    def expect(self) -> asyncio.Future:
        """A future for one outcome to arrive (called on the loop: it is alive)."""
        return self._loop().create_future()

    def after_turn(self, callback: Callable[[], None]) -> None:
        """Call `callback` (once, however often it is asked for meanwhile) after the callbacks that the loop
        runs now: on the loop, at the start of its next turn (which does not wait, as one is ready)."""
        if callback in self._after_turn:
            return
        if not self._after_turn:
            self._loop().call_soon(self._turn_over)
        self._after_turn.append(callback)

    def _turn_over(self) -> None:
        callbacks, self._after_turn = self._after_turn, []
        for callback in callbacks:
            callback()

    def follow(self, fut: Future) -> asyncio.Future:
        """The asyncio future of a concurrent Future's outcome."""
        out = self.expect()
        fut.add_done_callback(functools.partial(self._arrived, out))
        return out

    def _arrived(self, out: asyncio.Future, fut: Future) -> None:  # on the engine's thread (or the loop's)
        if fut.cancelled():
            self.arrive([(out, (None, CancelledError()))])
            return
        error = fut.exception()  # (not result(): a raise here would tie the error's traceback to this frame)
        self.arrive([(out, (None, error) if error is not None else (fut.result(), None))])

    def arrive(self, pairs: list[tuple[asyncio.Future, tuple]]) -> None:
        """(asyncio future, outcome) pairs, from any thread: each future gets its outcome on the loop."""
        self._done.extend(pairs)
        if self._woken:  # the pending _deliver resets the flag before it empties the queue: it takes these
            return
        self._woken = True  # two threads may both get here: a second _deliver finds nothing, no harm
        loop = self._loop()
        if loop is None:  # the loop is gone: nobody is waiting
            return
        try:
            loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the server's loop is closed: nobody is waiting
            pass

    def _deliver(self) -> None:
        self._woken = False
        done = self._done
        while done:
            out, outcome = done.popleft()
            if not out.done():
                out.set_result(outcome)
