"""The streaming engine: the API the service, the batch runner and the Ray workers call.

One chunk's path: `submit_append` checks its seq and turns its bytes into tokenizer-safe text
(text.py) under the lock, then tokenizes it without the lock (so that steps are planned and booked
meanwhile, and a native tokenizer runs beside them) and queues its `WorkItem` (scheduler.py) once
every earlier item of its stream is queued, so order within a stream holds. The step-loop thread asks the
scheduler for the next batch, gathers the batch's states from the state store
(state_store.py), runs the model once on the packed tokens (worker.py), scatters the new states
back, books the applied chunks and their segments (stream.py, segments.py), and acknowledges
them, after their record is durable when the durability policy writes one (record.py).

Threads: callers (any number), the step loop (one), the durable writer (one). One lock guards
all bookkeeping; the model and the tokenizer run outside it, so queries and appends never wait for a
step, and steps never wait for a caller's tokenization. The
loop launches step k+1 before it books step k, so on a GPU the host's share of the work (the
scheduling, the bookkeeping, the acks) overlaps the device's; two steps in flight never share
a stream, so the state store always holds each stream's state as of its booked chunks.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import (
    AlreadyExists,
    DurableWriteFailed,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    SeqGap,
    StreamRetError,
    TooBusy,
    Unavailable,
)
from ..model.checkpoint import model_fingerprint
from ..model.retnet import RetNetState
from ..model.spec import LoadedModel, load_model
from .config import Ack, Checkpoint, EngineConfig, StreamInfo, Summary
from .durability import DurableStore, DurableWriter
from .record import StreamCodec
from .scheduler import PieceLayout, Scheduler, Span, StepPlan, WorkItem
from .segments import Segment, add_step_spans, select_summary
from .state_store import StateStore
from .stream import Stream
from .worker import ModelRunner, StepOutput

log = logging.getLogger("streamret.engine")


def _resolve(fut: Future, value) -> None:
    """Set a result unless the caller already gave up on the future (a client that hung up)."""
    if not fut.done():
        fut.set_result(value)


def _reject(fut: Future, error: BaseException) -> None:
    if not fut.done():
        fut.set_exception(error)

SUMMARY_MODES = ("extractive", "generative")


def _what(item: WorkItem) -> str:
    return "a flush" if item.seq is None else f"chunk {item.seq}"


@dataclass(frozen=True)
class _AckWaiter:
    """What _write_durable acks once the record is written, when no WorkItem is waiting (a duplicate)."""

    future: Future
    seq: int


@dataclass(eq=False)
class _Step:
    """One step on its way through the loop: planned and gathered, launched, then booked."""

    plan: StepPlan
    spans: list[list[Span]]  # per stream of the plan
    span_lens: np.ndarray  # int64: token count of each span of the streams in `ran`, in order
    ran: list[str]  # streams with tokens, in the order of the model batch
    state: RetNetState | None = None
    out: StepOutput | None = None
    error: Exception | None = None

    def stream_ids(self) -> set[str]:
        return {w.stream_id for w in self.plan.work}


class Engine:
    """Many streams, one model, one device. Thread-safe; also a context manager (shutdown on exit)."""

    def __init__(self, loaded: LoadedModel, state_dir: str | None = None, config: EngineConfig | None = None,
                 durable: DurableStore | None = None):
        """durable: a DurableStore to use instead of one at state_dir (a cluster worker passes its fenced
        store, streamret/cluster/fenced_store.py)."""
        self.config = config = config or EngineConfig()
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.fingerprint = loaded.fingerprint or model_fingerprint(self.model)
        self.codec = StreamCodec(self.model.config, self.fingerprint, config)
        self.durable = durable if durable is not None else DurableStore(state_dir) if state_dir else None
        self.writer = DurableWriter(self.durable) if self.durable else None
        self.store = StateStore(self.model, self.codec, self._device_budget(), config.host_state_bytes, self.durable)
        self.scheduler = Scheduler(
            config.max_step_tokens, config.max_step_streams, config.max_pending_chunks_per_stream,
            config.max_pending_bytes_per_stream, config.max_pending_chunks, config.max_pending_bytes,
            config.max_stream_step_tokens,
        )
        self.runner = ModelRunner(self.model, config.chunk_size)
        step_state_bytes = config.max_step_state_bytes or (4 << 30 if self.model.device.type == "cuda" else 1 << 30)
        self._max_step_streams = max(1, step_state_bytes // self.store.state_bytes)
        self._lock = threading.RLock()
        self._has_work = threading.Condition(self._lock)  # the loop waits here for chunks
        self._applied = threading.Condition(self._lock)  # callers wait here for their chunks to apply
        self._stopping = False  # no new work is taken (a shutdown, or a checkpoint that ran out of time)
        self._abort = False
        self._closed = False  # shutdown ran
        self._broken: BaseException | None = None  # set when the step loop died: every call then fails fast
        self._tokens_processed = 0
        self._steps = 0
        self._step_streams = 0  # streams summed over steps: / steps = streams per step
        self._model_s = 0.0  # step-loop time in the model runner: launching, and waiting for results
        self._host_s = 0.0  # step-loop time in scheduling, gathering and booking (overlaps the device)
        self._recent_streams: deque[int] = deque(maxlen=256)
        self._recent_tokens: deque[int] = deque(maxlen=256)
        self._next_sweep = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="streamret-engine-step", daemon=True)
        self._thread.start()

    @classmethod
    def from_model(cls, spec: str = "default", device: str = "auto", state_dir: str | None = None,
                   config: EngineConfig | None = None, dtype: str | None = None) -> Engine:
        """An engine for a MODEL spec (see streamret.model.spec): random:<preset>[:seed], a folder, default."""
        return cls(load_model(spec, device, dtype), state_dir, config)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def _device_budget(self) -> int:
        if self.config.device_state_bytes is not None:
            return self.config.device_state_bytes
        if self.model.device.type == "cuda":
            return torch.cuda.mem_get_info(self.model.device)[0] // 2
        return 1 << 30

    # ------------------------------------------------------------------------------------------
    # streams

    def open(self, stream_id: str, create_if_missing: bool = True, group: str | None = None) -> StreamInfo:
        """The stream's info once its accepted chunks are applied, so that a client that reconnects
        resumes at applied_seq + 1 (info() answers at once instead).

        group: the stream's fairness group for the scheduler (e.g. its tenant: steps are shared
        round-robin over groups, then over their streams); None keeps the stream's group ("" at first).
        """
        self._check_id(stream_id)
        self._check_group(group)
        self._wait_applied(stream_id)
        with self._lock:
            self._check_running()
            stream = self.store.get(stream_id)
            if stream is None:
                if not create_if_missing:
                    raise NotFound(f"stream {stream_id!r} does not exist; open it with create_if_missing=True")
                stream = self._create(stream_id)
            if group is not None:
                stream.group = group
            return self._info(stream)

    def exists(self, stream_id: str) -> bool:
        self._check_id(stream_id)
        with self._lock:
            return stream_id in self.store.streams or (self.durable is not None and self.durable.exists(stream_id))

    def info(self, stream_id: str) -> StreamInfo:
        self._check_id(stream_id)
        with self._lock:
            return self._info(self._resident(stream_id))

    def close(self, stream_id: str, keep_state: bool = False) -> None:
        """Process the tail (an incomplete character becomes U+FFFD) and release the stream.

        keep_state=False deletes it everywhere; True keeps it in the durable store (or, without a
        state_dir, in memory) to be opened again later.
        """
        self._check_id(stream_id)
        self._submit_tail(stream_id, close=True).result()
        with self._lock:
            stream = self.store.streams.get(stream_id)
            if stream is not None and stream.busy:
                raise FailedPrecondition(f"stream {stream_id!r} received chunks while closing; close it again")
            if keep_state:
                if stream is not None and self.durable is not None:
                    self.store.evict(stream_id)
                return
            self.store.remove(stream_id)
        if self.durable is not None:
            self.writer.drain()  # a queued record must not bring the stream back
            with self._lock:
                self.durable.delete(stream_id)
                self.store.evicted.discard(stream_id)

    def evict(self, stream_id: str) -> None:
        """Write the stream to the durable store and free its memory (it reloads on next use)."""
        self._check_id(stream_id)
        if self.durable is None:
            raise FailedPrecondition("this engine has no state_dir, so there is nowhere to evict to")
        self._wait_applied(stream_id)
        with self._lock:
            stream = self.store.streams.get(stream_id)
            if stream is None:
                if not self.durable.exists(stream_id):
                    raise NotFound(f"stream {stream_id!r} does not exist")
                return
            if stream.busy:
                raise TooBusy(f"stream {stream_id!r} has chunks queued; evict it once they are applied")
            self.store.evict(stream_id)

    def drop(self, stream_id: str) -> None:
        """Forget the stream's copy in memory without writing it: another cluster worker took the stream
        over, so this copy is stale. Its queued chunks are applied first; the durable store is untouched."""
        self._check_id(stream_id)
        while True:
            self._wait_applied(stream_id)
            with self._lock:
                stream = self.store.streams.get(stream_id)
                if stream is None:
                    return
                if not stream.busy:
                    self.store.remove(stream_id)
                    return

    def fork(self, src: str, dst: str) -> StreamInfo:
        """A new stream dst that is an exact copy of src (state, text tail, segments and seq counter)."""
        self._check_id(dst)
        data = self.export_state(src)
        return self._import(dst, data, fork_of=src)

    def export_state(self, stream_id: str) -> bytes:
        """The stream's record (safetensors + JSON, see record.py) after all its accepted chunks."""
        self._check_id(stream_id)
        self._wait_applied(stream_id)
        with self._lock:
            return self.codec.encode(self._settled(stream_id), self.store.read(stream_id))

    def import_state(self, stream_id: str, data: bytes) -> StreamInfo:
        """Create stream_id from a record of export_state (ModelMismatch when another model wrote it)."""
        self._check_id(stream_id)
        return self._import(stream_id, bytes(data))

    def _import(self, stream_id: str, data: bytes, fork_of: str | None = None) -> StreamInfo:
        stream, state = self.codec.decode(data, stream_id=stream_id, origin="fork" if fork_of else "import")
        with self._lock:
            self._check_running()
            if stream_id in self.store.streams or (self.durable is not None and self.durable.exists(stream_id)):
                what = f"fork {fork_of!r} onto it" if fork_of else "import a state under its id"
                raise AlreadyExists(f"stream {stream_id!r} exists; close it first or pick a new id to {what}")
            stream.durable_seq = 0
            if self.durable is not None:  # the new stream is durable at once, as its seq counter says
                self.durable.write(stream_id, stream.revision, self.codec.encode(stream, state))
                stream.durable_seq = stream.applied_seq
            stream.since_durable = 0
            self.store.add(stream, state)
            return self._info(stream)

    def checkpoint_all(self, timeout_s: float | None = None) -> Checkpoint:
        """Apply every accepted chunk, then make every stream's state durable (for drain/SIGTERM).

        timeout_s: apply queued chunks for at most this long. When it runs out first, the engine stops taking
        and applying work (as a shutdown does): the chunks not applied are dropped, their acks fail with a
        retryable Unavailable, and clients resend them from the stream's durable_seq + 1; a stream holding
        part of a chunk goes back to its last record; every other stream's applied chunks are written.
        Returns what is durable and what is not (`Checkpoint.describe` says it in one line).
        """
        if timeout_s is not None and not timeout_s >= 0:
            raise ValueError(f"timeout_s must be >= 0 seconds or None, got {timeout_s!r}")
        with self._lock:
            applied = self._applied.wait_for(
                lambda: self.scheduler.pending_chunks == 0 or self._abort or self._broken is not None, timeout_s)
        dropped = (0, 0, 0) if applied else self._halt(f"the engine stopped after {timeout_s:g} s of drain")
        written = 0
        with self._lock:
            if self.durable is not None:
                for stream in self.store.streams.values():
                    if stream.since_durable and stream.at_boundary:
                        self._write_durable(stream, [])
                        written += 1
        if self.writer is not None:
            self.writer.drain()
        with self._lock:
            streams = len(self.store.streams)
            not_durable = streams if self.durable is None else sum(
                1 for s in self.store.streams.values() if s.since_durable)
        return Checkpoint(self.durable is not None, streams, written, not_durable, *dropped, timeout_s)

    def _halt(self, why: str) -> tuple[int, int, int]:
        """Stop the step loop after the steps it runs now, and drop every chunk not applied by then (their
        futures fail as Unavailable, naming `why`). Returns (chunks dropped, streams they belong to, streams of
        those that held part of a chunk and went back to their last record)."""
        with self._lock:
            self._stopping = True
            self._abort = True
            self._has_work.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join()
        chunks = streams = rolled_back = 0
        with self._lock:
            for stream in list(self.store.streams.values()):
                if stream.pending:
                    chunks += sum(1 for item in stream.pending if item.seq is not None)
                    streams += 1
                    rolled_back += not stream.at_boundary
                    self._fail_stream(stream, Unavailable(
                        f"{why} before this chunk of stream {stream.id!r} was applied; resend from the stream's "
                        "durable_seq + 1 (OpenStream gives it)"))
        return chunks, streams, rolled_back

    def shutdown(self, checkpoint: bool = True, timeout_s: float | None = None) -> Checkpoint | None:
        """Stop the step loop and release. checkpoint=True applies queued chunks and writes every state
        first (for at most timeout_s: see checkpoint_all); False drops queued chunks (their futures fail with
        Unavailable). Returns the checkpoint's report (None when checkpoint=False or already shut down)."""
        with self._lock:
            if self._closed:
                return None
            self._closed = True
            self._stopping = True  # new calls are refused; the loop applies what is queued, then ends
            self._abort = self._abort or not checkpoint
            self._has_work.notify_all()
        report = self.checkpoint_all(timeout_s) if checkpoint else None
        self._halt("the engine shut down")
        if self.writer is not None:
            self.writer.close()
        return report

    # ------------------------------------------------------------------------------------------
    # appends

    def submit_append(self, stream_id: str, seq: int, data: bytes | str, flush: bool = False,
                      durable: bool = False, group: str | None = None) -> Future:
        """Queue one chunk; the Future gives its Ack once applied (and durable if the policy writes now).

        durable: write the stream's record before this chunk's ack whatever the policy, so that the ack's
        durable_seq covers it (e.g. on a stream's last chunk). A no-op without a durable store.
        group: the stream's fairness group from now on (see `open`); None keeps it. A stream with chunks
        queued stays in its group's line until its queue empties.

        Raises at once: InvalidArgument (bad id, seq or data), ResourceExhausted (chunk too large),
        SeqGap (a chunk is missing), TooBusy (queues full: retry shortly). A stream that does not
        exist yet is created.
        """
        self._check_id(stream_id)
        self._check_group(group)
        raw = self._as_bytes(data)
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise InvalidArgument(f"seq must be an integer >= 1 (the first chunk of a stream is 1), got {seq!r}")
        with self._lock:
            self._check_running()
            stream = self.store.get(stream_id)
            if stream is None:
                if seq != 1:
                    raise SeqGap(stream_id, seq, 1)
                stream = self._create(stream_id)
            if group is not None:
                stream.group = group
            if seq <= stream.accepted_seq:
                return self._duplicate(stream, seq, durable)
            if seq != stream.accepted_seq + 1:
                raise SeqGap(stream_id, seq, stream.accepted_seq + 1)
            item = self._accept(stream, seq, raw, flush=flush, durable=durable)
        return self._tokenize(stream, item).future

    def append(self, stream_id: str, seq: int, data: bytes | str, flush: bool = False, durable: bool = False,
               group: str | None = None) -> Ack:
        return self.submit_append(stream_id, seq, data, flush, durable, group).result()

    def flush(self, stream_id: str) -> Ack:
        """Process the stream's text tail now (a flush takes no seq and is idempotent)."""
        self._check_id(stream_id)
        return self._submit_tail(stream_id, flush=True).result()

    def _submit_tail(self, stream_id: str, flush: bool = False, close: bool = False) -> Future:
        """Queue the stream's text tail (flush, or close: an unfinished character too) as an item without seq."""
        with self._lock:
            self._check_running()
            stream = self._resident(stream_id)
            item = self._accept(stream, None, b"", flush=flush, close=close)
        return self._tokenize(stream, item).future

    def _accept(self, stream: Stream, seq: int | None, raw: bytes, flush: bool = False, close: bool = False,
                durable: bool = False) -> WorkItem:
        """Text -> pieces -> an accepted WorkItem, counted against the queue bounds but not tokenized yet
        (`_tokenize` does that, without the lock). Called with the lock held."""
        self.scheduler.check_room(stream.id, len(raw))
        before = stream.text.snapshot()
        try:
            pieces = stream.text.close() if close else stream.text.feed(raw, flush)
        except BaseException:
            stream.text = self.codec.new_assembler(before)
            raise
        item = WorkItem(stream.id, seq, None, pieces, None, stream.text.snapshot(), len(raw), durable=durable,
                        text_before=before, accepted_before=stream.accepted_seq, group=stream.group)
        self.scheduler.reserve(item)
        stream.pending.append(item)
        if seq is not None:
            stream.accepted_seq = seq
        return item

    def _tokenize(self, stream: Stream, item: WorkItem) -> WorkItem:
        """Tokenize an accepted item (without the lock), then queue it and any later items of its stream
        that were waiting for it. A failure takes the stream's front back to before the item: the item
        fails with the error, which is raised here too, and items accepted after it fail as resendable."""
        error = None
        try:
            ids = self.tokenizer.encode_batch([p.text for p in item.pieces]) if item.pieces else []
            tokens = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64)
            if tokens.size and (tokens.min() < 0 or tokens.max() >= self.model.config.vocab_size):
                raise InvalidArgument(
                    f"the tokenizer produced ids outside the model's vocabulary [0, {self.model.config.vocab_size}); "
                    "the engine's tokenizer and model do not belong together"
                )
            ends = np.cumsum([len(t) for t in ids], dtype=np.int64)
            layout = PieceLayout.of(item.pieces, ends)  # without the lock
        except BaseException as e:  # handed to the caller and to the item's future below; never left half-accepted
            error = e
        with self._lock:
            if item not in stream.pending:
                return item  # the stream failed or shut down meanwhile: the item's future is settled
            if error is not None:
                self._drop_from(stream, item, error)
                raise error
            item.set_tokens(tokens, ends, layout)
            for waiting in stream.pending:  # in order: an item waits for every earlier one
                if waiting.queued:
                    continue
                if waiting.tokens is None:
                    break
                self.scheduler.enqueue(waiting)
            self._has_work.notify_all()
        return item

    def _drop_from(self, stream: Stream, item: WorkItem, error: BaseException) -> None:
        """Undo the acceptance of `item` and of every item accepted after it (none of them is queued)."""
        while True:
            last = stream.pending.pop()
            self.scheduler.complete(last)
            if last is item:
                break
            _reject(last.future, Unavailable(
                f"{_what(last)} of stream {stream.id!r} was not applied: {_what(item)} before it failed "
                f"({error}); resend from seq {item.accepted_before + 1}"))
        stream.text = self.codec.new_assembler(item.text_before)
        stream.accepted_seq = item.accepted_before
        _reject(item.future, error)
        self._applied.notify_all()  # waiters for the stream's last item re-check

    def _duplicate(self, stream: Stream, seq: int, durable: bool = False) -> Future:
        out: Future = Future()
        if seq <= stream.applied_seq:
            if durable and self.durable is not None and stream.durable_seq < seq:
                # a resent last chunk that must be durable: write the record, then ack it as a duplicate
                written: Future = Future()

                def after_write(f: Future) -> None:
                    if f.exception() is not None:
                        _reject(out, f.exception())
                    else:
                        _resolve(out, dataclasses.replace(f.result(), duplicate=True))

                written.add_done_callback(after_write)
                self._write_durable(stream, [_AckWaiter(written, seq)])  # waits for a chunk boundary
            else:
                _resolve(out, dataclasses.replace(self._ack(stream, seq), duplicate=True))
            return out
        original = next(it for it in stream.pending if it.seq == seq)
        original.durable |= durable

        def relay(f: Future) -> None:
            if not f.cancelled() and isinstance(f.exception(), DurableWriteFailed):
                _reject(out, f.exception())  # applied, not durable: the original's error says so
            elif f.cancelled() or f.exception() is not None:
                _reject(out, Unavailable(f"chunk {seq} of stream {stream.id!r} was not applied; resend it"))
            else:
                _resolve(out, dataclasses.replace(f.result(), duplicate=True))

        original.future.add_done_callback(relay)
        return out

    # ------------------------------------------------------------------------------------------
    # outputs

    def embedding(self, stream_id: str) -> np.ndarray:
        """The stream embedding (float32 [embed_dim], L2-normalised) after all accepted chunks."""
        self._check_id(stream_id)
        self._wait_applied(stream_id)
        with self._lock:
            self._settled(stream_id)
            state = self.store.read(stream_id)
        return self.runner.embed(state.pool_sum, state.pool_count)[0]

    def encode(self, texts: str | Iterable[str], batch_size: int = 256, show_progress_bar: bool = False,
               normalize: bool = True) -> np.ndarray:
        """One embedding per whole text, of any length: float32 [len(texts), embed_dim] ([embed_dim] for a str).

        Like sentence-transformers' `encode`. Each text is read as a temporary stream and gets exactly the
        stream embedding it would get appended in one chunk; `batch_size` texts are in the engine at once
        (the scheduler packs them into steps of up to max_step_tokens), and every temporary stream is closed
        when its text is done, also on an error. An empty list gives shape (0, embed_dim); an empty text the
        zero vector (it has no tokens). Embeddings are L2-normalised by the model's pooling; normalize=True
        rescales away rounding. show_progress_bar: a tqdm bar over texts. Raises InvalidArgument for an item
        that is not a str, or the first text the engine could not embed (naming its index).
        """
        from ..batch.encode import encode_with_engine

        return encode_with_engine(self, texts, batch_size=batch_size, show_progress_bar=show_progress_bar,
                                  normalize=normalize)

    def segments(self, stream_id: str, with_embeddings: bool = True) -> list[Segment]:
        """Kept segments in document order, scored by cosine similarity to the stream embedding."""
        self._check_id(stream_id)
        self._wait_applied(stream_id)
        with self._lock:
            stream = self._settled(stream_id)
            state = self.store.read(stream_id)
            emb = self.runner.embed(state.pool_sum, state.pool_count)[0]
            return stream.segments.segments(emb, with_embeddings)

    def summarize(self, stream_id: str, k: int = 5, mode: str = "extractive", max_new_tokens: int = 64) -> Summary:
        """Top-k segments (MMR: salient, not redundant) in document order; generative mode also decodes a
        text greedily from a copy of the stream's state (the stream itself is untouched)."""
        self._check_id(stream_id)
        if mode not in SUMMARY_MODES:
            raise InvalidArgument(f"mode={mode!r}; use one of {SUMMARY_MODES}")
        if k < 0 or max_new_tokens < 0:
            raise InvalidArgument(f"k and max_new_tokens must be >= 0, got k={k}, max_new_tokens={max_new_tokens}")
        if mode == "generative" and self.model.lm_head is None:
            raise FailedPrecondition("this model has no LM head, so it cannot generate; use mode='extractive'")
        self._wait_applied(stream_id)
        with self._lock:
            stream = self._settled(stream_id)
            applied_seq = stream.applied_seq
            state = self.store.read(stream_id)
            emb = self.runner.embed(state.pool_sum, state.pool_count)[0]
            segments = stream.segments.segments(emb)
        picked = select_summary(segments, k, self.config.mmr_lambda)
        text = ""
        if mode == "generative":
            prompt = self.tokenizer.encode(self.config.summary_prompt)
            ids = self.runner.generate(state.to(self.model.device), prompt, max_new_tokens, self.tokenizer.eos_id)
            text = self.tokenizer.decode(ids)
        return Summary(stream_id, applied_seq, picked, text)

    def stats(self) -> dict:
        """Counters for metrics and health. durable_writable: False while the durable store refuses writes
        (probed here until it takes them again), None without a durable store."""
        writable = None
        if self.durable is not None:
            writable = self.durable.writable or self.durable.probe()
        with self._lock:
            return {
                "streams": self.store.counts(),
                "tokens_processed": self._tokens_processed,
                "steps": self._steps,
                "step_streams": self._step_streams,
                "recent_step_batch_sizes": list(self._recent_streams),
                "recent_step_tokens": list(self._recent_tokens),
                "queue_depth": self.scheduler.pending_chunks,
                "queue_tokens": self.scheduler.pending_tokens,
                "queue_bytes": self.scheduler.pending_bytes,
                "device_stream_capacity": self.store.device.capacity,
                "loop_model_seconds": self._model_s,
                "loop_host_seconds": self._host_s,
                "durable_write_errors": self.writer.errors if self.writer else 0,
                "durable_writable": writable,
            }

    # ------------------------------------------------------------------------------------------
    # the step loop

    def _loop(self) -> None:
        try:
            self._steps_forever()
        except BaseException as e:  # a bug must not leave callers waiting forever on their futures
            self._crash(e)

    def _crash(self, error: BaseException) -> None:
        log.critical("the engine's step loop stopped", exc_info=error)
        with self._lock:
            self._broken = error
            for stream in list(self.store.streams.values()):
                if stream.pending:
                    try:
                        self._fail_stream(stream, Unavailable(
                            f"the engine stopped after an internal error; stream {stream.id!r} is safe up to "
                            f"its durable_seq {stream.durable_seq}: resend after the server restarts"))
                    except Exception:
                        for item in stream.pending:
                            _reject(item.future, Unavailable("the engine stopped after an internal error"))
            self._applied.notify_all()

    def _steps_forever(self) -> None:
        """Launch step k+1, then book step k while the device runs k+1 (the two never share a stream)."""
        inflight: _Step | None = None
        while True:
            with self._lock:
                while inflight is None and (self._abort or not self.scheduler.has_work()):
                    # a stop waits for chunks still being tokenized (counted, not queued yet) unless aborting
                    if self._stopping and (self._abort or not self.scheduler.pending_chunks):
                        return
                    self._has_work.wait(timeout=self._sweep_due())
                    self._sweep_durable()
                t0 = time.perf_counter()
                step = self._next_step(inflight)
                self._host_s += time.perf_counter() - t0
            if step is not None:
                self._launch(step)
            if inflight is not None:
                self._finish(inflight)
            inflight = step

    def _next_step(self, inflight: _Step | None) -> _Step | None:
        """Schedule and gather the next step (lock held); None when nothing can run beside `inflight`."""
        if self._abort or not self.scheduler.has_work():
            return None
        busy = inflight.stream_ids() if inflight else set()
        room = min(self._max_step_streams, self.store.device.capacity - (len(inflight.ran) if inflight else 0))
        if room < 1:
            return None
        plan = self.scheduler.schedule(room, exclude=busy)
        if not plan.work:
            return None
        spans, lens = zip(*(w.spans_and_lens() for w in plan.work))
        ran_lens = [n for w, n in zip(plan.work, lens) if w.n_tokens]
        step = _Step(plan, list(spans), np.concatenate(ran_lens) if ran_lens else np.zeros(0, np.int64),
                     [w.stream_id for w in plan.work if w.n_tokens])
        if step.ran:
            try:
                step.state = self.store.gather(step.ran)
            except Exception as e:
                step.error = e
        return step

    def _launch(self, step: _Step) -> None:
        """Run the model on a step (no lock: on a GPU this returns once the kernels are queued)."""
        if step.error is not None or not step.ran:
            return
        t0 = time.perf_counter()
        try:
            ids, lens = step.plan.packed()
            step.out = self.runner.run(ids, lens, step.state, step.span_lens)
        except Exception as e:
            step.error = e
        step.state = None
        self._model_s += time.perf_counter() - t0

    def _finish(self, step: _Step) -> None:
        """Wait for a step's results, scatter its states and book it; then send its acks."""
        t0 = time.perf_counter()
        if step.out is not None:
            try:
                step.out.wait()
            except Exception as e:
                step.error = e
        t1 = time.perf_counter()
        with self._lock:
            if step.error is not None:
                self.store.unpin(step.ran)
                self._fail_plan(step.plan, step.error)
                resolved = []
            else:
                if step.ran:
                    self.store.scatter(step.ran, step.out.state)
                resolved = self._apply(step.plan, step.spans, step.out)
            self._sweep_durable()
        for fut, ack in resolved:
            _resolve(fut, ack)
        t2 = time.perf_counter()
        self._model_s += t1 - t0
        self._host_s += t2 - t1

    def _apply(self, plan: StepPlan, spans: list, out: StepOutput | None) -> list[tuple[Future, Ack]]:
        """Book a finished step: segments, applied items, durability. Returns the acks to send."""
        closed = []  # (stream, ClosedSegment, row of the stream in out.embeddings or None)
        done: dict[str, list[WorkItem]] = {}
        ran = [(self.store.streams[w.stream_id], sp) for w, sp in zip(plan.work, spans) if w.n_tokens]
        if ran:  # one booking of the sums for all the streams that ran (row: theirs in out.embeddings)
            booked = add_step_spans([st.segments for st, _ in ran], [sp for _, sp in ran], out.span_sums.numpy())
            closed += [(st, seg, row) for row, ((st, _), segs) in enumerate(zip(ran, booked)) for seg in segs]
        for work, work_spans in zip(plan.work, spans):
            stream = self.store.streams[work.stream_id]
            if not work.n_tokens:  # only pieces without tokens (a flush): no sums
                closed += [(stream, seg, None) for seg in stream.segments.add_spans(work_spans, None)]
            for s in work.slices:
                if s.completes:
                    stream.apply(s.item)
                    self.scheduler.complete(s.item)
                    done.setdefault(stream.id, []).append(s.item)
                else:  # part of a chunk longer than the step: the state is past applied_seq until it completes
                    stream.partial_tokens += s.end - s.start
        if closed:
            self._keep_segments(closed, out)
        self._steps += 1
        self._step_streams += len(plan.work)
        self._tokens_processed += plan.n_tokens
        self._recent_streams.append(len(plan.work))
        self._recent_tokens.append(plan.n_tokens)
        resolved = []
        for sid, items in done.items():
            stream = self.store.streams[sid]
            every = self.config.durable_every_chunks
            policy = bool(every) and stream.since_durable >= every
            asked = [it for it in items if it.durable]
            if self.durable is not None and (policy or asked or stream.owed_record):
                # acks go out once the record is written (the scheduler ends a stream's work at a chunk
                # boundary whenever it completes one, so the state here is the state after applied_seq);
                # when only some chunks asked for it, the others are acked now, as in a step of their own
                waiting = items if policy else asked
                owed, stream.owed_record = stream.owed_record, []
                resolved += [(it.future, self._ack(stream, it.seq)) for it in items if it not in waiting]
                self._write_durable(stream, [*waiting, *owed])
            else:
                resolved += [(it.future, self._ack(stream, it.seq)) for it in items]
        self._applied.notify_all()
        return resolved

    def _keep_segments(self, closed: list, out: StepOutput | None) -> None:
        sums = torch.from_numpy(np.stack([seg.pool_sum for _, seg, _ in closed]))
        counts = torch.tensor([seg.pool_count for _, seg, _ in closed])
        embeddings = self.runner.embed(sums, counts)
        stream_embeddings = out.embeddings.numpy() if out is not None else None
        start = 0
        for (stream, row), group in itertools.groupby(closed, key=lambda c: (c[0], c[2])):  # per stream
            segs = [seg for _, seg, _ in group]
            if row is not None:
                stream_emb = stream_embeddings[row]
            else:
                state = self.store.read(stream.id)
                stream_emb = self.runner.embed(state.pool_sum, state.pool_count)[0]
            stream.segments.keep_many(segs, embeddings[start : start + len(segs)], stream_emb)
            start += len(segs)

    def _write_durable(self, stream: Stream, items: list[WorkItem | _AckWaiter]) -> None:
        """Hand a snapshot of the stream's applied side to the writer; ack `items` once it is written.

        A record holds the state after exactly the chunks up to applied_seq: one taken while the state holds
        part of the next chunk (split across steps) would, after a restart, apply that part twice (issue 15,
        item 1). Such a write waits, with `items`, for the step that completes the chunk (`_apply`)."""
        if not stream.at_boundary:
            stream.owed_record.extend(items)
            return
        meta, tensors = self.codec.snapshot(stream, self.store.read(stream.id))
        changes = stream.since_durable
        stream.since_durable = 0
        stream.durable_time = time.monotonic()
        applied_seq = stream.applied_seq

        def written(error: Exception | None) -> None:
            with self._lock:
                if error is None:
                    stream.durable_seq = max(stream.durable_seq, applied_seq)
                    acks = [(it.future, self._ack(stream, it.seq)) for it in items]
                else:  # an ack that waited for this record must not claim success: it carries the error
                    log.error("durable write of stream %r failed: %s", stream.id, error)
                    stream.since_durable += max(changes, 1)  # still to write (next policy turn, or shutdown)
                    failed = [(it.future, self._not_durable(stream, it.seq, error)) for it in items]
            if error is None:
                for fut, ack in acks:
                    _resolve(fut, ack)
            else:
                for fut, exc in failed:
                    _reject(fut, exc)

        self.writer.submit(stream.id, stream.revision, meta, tensors, written)

    def _not_durable(self, stream: Stream, seq: int | None, error: Exception) -> DurableWriteFailed:
        """The error of a chunk that was applied but whose durable record could not be written."""
        what = "a flush" if seq is None else f"chunk {seq}"
        reason = str(error) if isinstance(error, StreamRetError) else type(error).__name__
        return DurableWriteFailed(
            f"{what} of stream {stream.id!r} was applied (applied_seq {stream.applied_seq}) but is not durable: "
            f"{reason}. durable_seq stays {stream.durable_seq}: keep the chunks after it, and resend the last one "
            "with durable=true to write the record again")

    def _sweep_due(self) -> float | None:
        every = self.config.durable_every_s
        return None if every is None or self.durable is None else max(0.0, self._next_sweep - time.monotonic())

    def _sweep_durable(self) -> None:
        """Time policy: write streams whose last durable record is older than durable_every_s."""
        every = self.config.durable_every_s
        now = time.monotonic()
        if every is None or self.durable is None or now < self._next_sweep:
            return
        self._next_sweep = now + every / 4
        for stream in self.store.streams.values():
            # a stream in the middle of a long chunk waits: the step that completes the chunk ends at its
            # boundary, and this sweep runs right after that step
            if stream.since_durable and now - stream.durable_time >= every and stream.at_boundary:
                self._write_durable(stream, [])

    def _fail_plan(self, plan: StepPlan, error: Exception) -> None:
        log.exception("engine step over %d streams failed", len(plan.work), exc_info=error)
        for work in plan.work:
            stream = self.store.streams[work.stream_id]
            self._fail_stream(stream, Unavailable(
                f"the model step failed ({type(error).__name__}); stream {stream.id!r} is back at seq "
                f"{stream.applied_seq}: resend from seq {stream.applied_seq + 1}"
            ))

    def _fail_stream(self, stream: Stream, error: StreamRetError) -> None:
        items = stream.rewind(self.codec.new_assembler(stream.applied_text))
        self.scheduler.cancel(stream.id, items)
        owed, stream.owed_record = stream.owed_record, []
        for item in items:
            _reject(item.future, error)
        for waiter in owed:
            _reject(waiter.future, error)
        if not stream.at_boundary:
            # Its state holds part of a chunk that is dropped now: continuing from it would apply that part
            # twice. The stream leaves memory; it reloads from its durable record (durable_seq), or, without
            # one, starts again empty, and the client resends from there.
            log.warning("stream %r dropped from memory: its state held part of a chunk that was not applied; "
                        "it goes back to its durable record (durable_seq %d)", stream.id, stream.durable_seq)
            stream.partial_tokens = 0
            self.store.remove(stream.id)
            if self.durable is not None:
                self.store.evicted.add(stream.id)
        self._applied.notify_all()

    # ------------------------------------------------------------------------------------------
    # helpers

    def _create(self, stream_id: str) -> Stream:
        stream = Stream(stream_id, self.codec.new_tracker(), self.codec.new_assembler())
        self.store.add(stream, self.model.init_state(1, device="cpu"))
        return stream

    def _resident(self, stream_id: str) -> Stream:
        stream = self.store.get(stream_id)
        if stream is None:
            raise NotFound(f"stream {stream_id!r} does not exist; append to it or open it first")
        return stream

    def _settled(self, stream_id: str) -> Stream:
        """The resident stream once its state is at a chunk boundary (lock held): outputs and records then
        describe exactly the chunks up to applied_seq, never part of a chunk split across steps."""
        while True:
            stream = self._resident(stream_id)
            if stream.at_boundary or self._broken is not None:
                return stream
            self._applied.wait()

    def _wait_applied(self, stream_id: str) -> None:
        """Block until every chunk accepted so far for this stream is applied (or failed)."""
        with self._lock:
            stream = self.store.streams.get(stream_id)
            if stream is None or not stream.pending:
                return
            last = stream.pending[-1]
            self._applied.wait_for(lambda: last not in stream.pending or self._broken is not None)

    def _ack(self, stream: Stream, seq: int | None) -> Ack:
        return Ack(stream.id, stream.applied_seq if seq is None else seq, stream.applied_seq, stream.durable_seq,
                   stream.tokens)

    def _info(self, stream: Stream) -> StreamInfo:
        return StreamInfo(stream.id, stream.applied_seq, stream.durable_seq, stream.tokens, self.fingerprint)

    def _check_running(self) -> None:
        if self._broken is not None:
            raise Unavailable("the engine stopped after an internal error (see the server log); restart the server: "
                              "every stream is safe up to its durable_seq")
        if self._stopping:
            raise Unavailable("the engine is shutting down; retry on another worker")

    def _check_id(self, stream_id: str) -> None:
        if not isinstance(stream_id, str) or not stream_id:
            raise InvalidArgument(f"a stream id must be a non-empty string, got {stream_id!r}")
        try:
            n = len(stream_id.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidArgument("the stream id is not valid Unicode (it holds a lone surrogate)") from None
        if n > self.config.max_stream_id_bytes:
            raise InvalidArgument(f"the stream id has {n} bytes; the most is {self.config.max_stream_id_bytes}")

    def _check_group(self, group: str | None) -> None:
        if group is None:
            return
        if not isinstance(group, str):
            raise InvalidArgument(f"a stream's group must be a string (e.g. its tenant) or None, got {group!r}")
        if len(group.encode("utf-8", "surrogatepass")) > self.config.max_stream_id_bytes:
            raise InvalidArgument(f"the group name {group[:40]!r}... is longer than max_stream_id_bytes="
                                  f"{self.config.max_stream_id_bytes} bytes; use a shorter name")

    def _as_bytes(self, data: bytes | str) -> bytes:
        if isinstance(data, str):
            try:
                data = data.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidArgument("the chunk text is not valid Unicode (it holds a lone surrogate)") from None
        elif isinstance(data, (bytes, bytearray, memoryview)):
            data = bytes(data)
        else:
            raise InvalidArgument(f"chunk data must be bytes or str, got {type(data).__name__}")
        if len(data) > self.config.max_chunk_bytes:
            raise ResourceExhausted(
                f"chunk of {len(data)} bytes exceeds max_chunk_bytes={self.config.max_chunk_bytes}; split it"
            )
        return data
