"""The engine's public API: a thin layer over the engine core (core.py), in the shape of vLLM v1.

The service, the batch runner and the Ray workers call this class (typed against `EngineAPI`, api.py,
which the Ray `ClusterEngine` implements too). Each method checks its arguments, then hands the work
on: a chunk goes through the intake (intake.py: accepted under the engine lock; once the lock is let go the
tokenize stage, tokenize_stage.py, cuts its text into tokenizer-safe pieces and makes their tokens on engine
threads or in processes of theirs; then it is queued), the step
loop (core.py) applies it, and the durability policy (durability/) acknowledges it once its record is
written when one is due; queries read the state store (state_store.py) once the stream's accepted
chunks are applied.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from typing import NamedTuple

import numpy as np

from ..errors import (
    AlreadyExists,
    DamagedRecord,
    FailedPrecondition,
    InvalidArgument,
    ModelMismatch,
    NotFound,
    ResourceExhausted,
    SeqGap,
    TooBusy,
    Unavailable,
)
from ..model.spec import LoadedModel, load_model
from .at_exit import shut_down_at_exit
from .config import Ack, Checkpoint, EngineConfig, StreamInfo, Summary
from .core import EngineCore
from .durability import DurableStore
from .intake import Intake
from .roles import ServesRoles
from .scheduler import WorkItem
from .segments import Segment
from .state_store import Prefetched
from .stream import Stream
from .tokenize_stage import StageClosed, TokenizeStage

SUMMARY_MODES = ("extractive", "generative")


class _Chunk(NamedTuple):
    """A chunk checked and cut without the lock (Engine._prepared), to be accepted under it."""

    stream_id: str
    seq: int
    raw: bytes
    flush: bool
    durable: bool
    group: str | None
    prefetched: Prefetched | None


class Engine(EngineCore, ServesRoles):
    """Many streams, one model, one device. Thread-safe; also a context manager (shutdown on exit).

    The step loop, checkpoint_all and stats come from EngineCore."""

    def __init__(self, loaded: LoadedModel, state_dir: str | None = None, config: EngineConfig | None = None,
                 durable: DurableStore | None = None):
        """durable: a DurableStore to use instead of one at state_dir (a cluster worker passes its fenced
        store, streamret/cluster/fenced_store.py)."""
        super().__init__(loaded, state_dir, config, durable)
        self.tokenizer = loaded.tokenizer
        self.intake = Intake(self._lock, self._has_work, self._applied, self.scheduler, self.store,
                             self.durability)
        self._tokenize = TokenizeStage(self.tokenizer, self.model.config.vocab_size, self.intake.tokenized,
                                       self.codec.text_params, threads=self.config.tokenizer_threads,
                                       max_batch_bytes=self.config.tokenize_batch_bytes, on_error=self._crash,
                                       procs=self.tokenize_procs, join_bytes=self.config.tokenize_join_bytes,
                                       join_wait_s=self.config.tokenize_join_wait_s,
                                       hungry=lambda: self.waiting_for_work,
                                       split_bursts=self.config.tokenize_split_bursts)
        self._went_idle = self._tokenize.wake
        self._nothing_to_cut = self._tokenize.idle
        self._stage_stats = self._tokenize.stats
        self._sample("tokenize_samples", self._tokenize.threads[0])  # one of the stage's threads stands for all
        shut_down_at_exit(self)  # a script that never calls shutdown() must not abort at interpreter exit

    @classmethod
    def from_model(cls, spec: str = "default", device: str = "auto", state_dir: str | None = None,
                   config: EngineConfig | None = None, dtype: str | None = None) -> Engine:
        """An engine for a MODEL spec (see streamret.model.spec): random:<preset>[:seed], a folder, default."""
        return cls(load_model(spec, device, dtype), state_dir, config)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def shutdown(self, checkpoint: bool = True, timeout_s: float | None = None) -> Checkpoint | None:
        """Stop the step loop and release (EngineCore.shutdown), then end the tokenize stage."""
        report = super().shutdown(checkpoint, timeout_s)
        self._tokenize.close()
        return report

    @property
    def embed_dim(self) -> int:
        """Size of the embeddings this engine returns."""
        return int(self.model.config.out_embed_dim)

    # ------------------------------------------------------------------------------------------
    # streams

    def open(self, stream_id: str, create_if_missing: bool = True, group: str | None = None,
             durable: bool = True) -> StreamInfo:
        """The stream's info once its accepted chunks are applied, so that a client that reconnects
        resumes at applied_seq + 1 (info() answers at once instead).

        group: the stream's fairness group for the scheduler (e.g. its tenant: steps are shared
        round-robin over groups, then over their streams); None keeps the stream's group ("" at first).
        durable=False creates a batch temporary: no record is written for it unless a chunk asks for one
        (a record per row of a table would cost a write, an fsync and a delete each).
        """
        self._check_id(stream_id)
        self._check_group(group)
        self._wait_applied(stream_id)
        prefetched = self.store.prefetch(stream_id)  # a cold load reads storage before the lock
        with self._lock:
            self._check_running()
            stream = self.store.get(stream_id, prefetched)
            if stream is None:
                if not create_if_missing:
                    raise NotFound(f"stream {stream_id!r} does not exist; open it with create_if_missing=True")
                stream = self._create(stream_id)
                stream.ephemeral = not durable
            if group is not None:
                stream.group = group
            return self._info(stream)

    def exists(self, stream_id: str) -> bool:
        self._check_id(stream_id)
        with self._lock:
            return self.store.exists(stream_id)

    def info(self, stream_id: str) -> StreamInfo:
        self._check_id(stream_id)
        prefetched = self.store.prefetch(stream_id)
        with self._lock:
            return self._info(self._resident(stream_id, prefetched))

    def close(self, stream_id: str, keep_state: bool = False) -> None:
        """Process the tail (an incomplete character becomes U+FFFD) and release the stream.

        keep_state=False deletes it everywhere; True keeps it in the durable store (or, without a
        state_dir, in memory) to be opened again later. A stream whose durable record cannot be loaded
        (damaged, or another model's) is deleted unread by keep_state=False, so that its id can be used again.
        keep_state=False of a stream with no chunk in flight and no durable record (a batch row's temporary, or
        any stream without a state_dir) deletes it at once: its tail would only go into a state deleted after.
        """
        self._check_id(stream_id)
        if not keep_state and self._forget_idle(stream_id):
            return
        try:
            self._submit_tail(stream_id, close=True).result()
        except (DamagedRecord, ModelMismatch):  # raised only by loading the record: the stream is not in memory
            if keep_state:
                raise
            with self._lock:
                self.store.delete_record(stream_id)
            return
        with self._lock:
            stream = self.store.streams.get(stream_id)
            if stream is not None and stream.busy:
                raise FailedPrecondition(f"stream {stream_id!r} received chunks while closing; close it again")
            if keep_state:
                written = self.store.evict(stream_id) if stream is not None and self.durable is not None else None
            else:
                self.store.remove(stream_id)
                unrecorded = stream is not None and stream.ephemeral and not stream.recorded
        if keep_state:
            if written is not None:
                written.result()  # kept means in the store when close returns (the write's error otherwise)
            return
        if self.durable is not None and not unrecorded:  # a temporary never written has nothing to delete
            self.durability.drain()  # a queued record must not bring the stream back
            with self._lock:
                self.store.delete_record(stream_id)

    def _forget_idle(self, stream_id: str) -> bool:
        """close(keep_state=False)'s short way (no step for the tail): True when the stream was removed."""
        with self._lock:
            self._check_running()
            stream = self.store.streams.get(stream_id)
            if stream is None or stream.busy or (self.durable is not None and not (stream.ephemeral
                                                                                  and not stream.recorded)):
                return False
            self.store.remove(stream_id)
            return True

    def evict(self, stream_id: str) -> None:
        """Write the stream to the durable store and free its memory (it reloads on next use)."""
        self._check_id(stream_id)
        if self.durable is None:
            raise FailedPrecondition("this engine has no state_dir, so there is nowhere to evict to")
        self._wait_applied(stream_id)
        with self._lock:
            stream = self.store.streams.get(stream_id)
            if stream is None:
                if not self.store.exists(stream_id):
                    raise NotFound(f"stream {stream_id!r} does not exist")
                return
            if stream.busy:
                raise TooBusy(f"stream {stream_id!r} has chunks queued; evict it once they are applied")
            written = self.store.evict(stream_id)
        if written is not None:
            written.result()  # the caller (e.g. a cluster handover) reads the record next

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
        prefetched = self.store.prefetch(stream_id)
        with self._lock:
            return self.codec.encode(self._settled(stream_id, prefetched), self.store.read(stream_id))

    def import_state(self, stream_id: str, data: bytes) -> StreamInfo:
        """Create stream_id from a record of export_state (ModelMismatch when another model wrote it)."""
        self._check_id(stream_id)
        return self._import(stream_id, bytes(data))

    def _import(self, stream_id: str, data: bytes, fork_of: str | None = None) -> StreamInfo:
        stream, state = self.codec.decode(data, stream_id=stream_id, origin="fork" if fork_of else "import")
        stream.durable_seq = 0
        stream.since_durable = 0
        with self._lock:
            self._check_running()
            if stream_id in self.store.importing or self.store.exists(stream_id):
                what = f"fork {fork_of!r} onto it" if fork_of else "import a state under its id"
                raise AlreadyExists(f"stream {stream_id!r} exists; close it first or pick a new id to {what}")
            self.store.importing.add(stream_id)  # the id is taken while its record is written without the lock
        try:
            if self.durable is not None:  # the new stream is durable at once, as its seq counter says
                self.durable.write(stream_id, stream.revision, self.codec.encode(stream, state))
                stream.durable_seq = stream.applied_seq
            with self._lock:
                self.store.add(stream, state)
                return self._info(stream)
        finally:
            with self._lock:
                self.store.importing.discard(stream_id)

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
        (outcome,) = self.submit_appends([(stream_id, seq, data, flush, durable, group)])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def submit_appends(self, calls: Sequence[tuple]) -> list[Future | Exception]:
        """submit_append for many chunks, the engine lock taken once for all of them: `calls` holds each one's
        (stream_id, seq, data, flush, durable, group), in order; the outcome of each is its Future, or the error
        submit_append would have raised for it. The accepted chunks go to the tokenize stage together, once the
        lock is let go (it cuts their texts and tokenizes them). An engine process hands over each batch of chunks
        that came through a connection this way (engine_process.py), one lock take a batch instead of one a chunk (with
        six front processes the step loop's wait for the lock stayed at 8 ms a step on the H200 all the same:
        bench/RESULTS.md, session 8)."""
        prepared: list[_Chunk | Exception] = []
        for stream_id, seq, data, flush, durable, group in calls:
            try:
                prepared.append(self._prepared(stream_id, seq, data, flush, durable, group))
            except Exception as e:  # noqa: BLE001  (that chunk's outcome; the others go on)
                prepared.append(e)
        out: list[Future | Exception] = []
        items = []
        with self._lock:
            for chunk in prepared:
                if isinstance(chunk, Exception):
                    out.append(chunk)
                    continue
                try:
                    future, item = self._accept(chunk)
                except Exception as e:  # noqa: BLE001
                    out.append(e)
                    continue
                out.append(future)
                if item is not None:
                    items.append(item)
        if items:
            self._hand_over(items)
        return out

    def _hand_over(self, items: list[WorkItem]) -> None:
        """Accepted items to the tokenize stage, the engine lock let go. A shutdown between the two closes the
        stage: the items then fail as a failed tokenization fails them (resendable, their streams' text fronts
        taken back), rather than the caller getting the stage's error for chunks it was told were accepted."""
        try:
            self._tokenize.submit_many(items)
        except StageClosed:
            self.intake.tokenized([(item, Unavailable(
                f"the engine shut down before this chunk of stream {item.stream_id!r} was applied; resend it from "
                "the stream's durable_seq + 1 once the server is back")) for item in items])

    def _prepared(self, stream_id: str, seq: int, data: bytes | str, flush: bool, durable: bool,
                  group: str | None) -> _Chunk:
        """A chunk's arguments checked and its record read if it is cold, without the lock."""
        self._check_id(stream_id)
        self._check_group(group)
        raw = self._as_bytes(data)
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise InvalidArgument(f"seq must be an integer >= 1 (the first chunk of a stream is 1), got {seq!r}")
        return _Chunk(stream_id, seq, raw, flush, durable, group, self.store.prefetch(stream_id))

    def _accept(self, chunk: _Chunk) -> tuple[Future, WorkItem | None]:
        """Accept a prepared chunk (lock held): its Future, and its WorkItem for the tokenize stage (None for a
        duplicate); or raise what submit_append raises."""
        self._check_running()
        stream_id, seq = chunk.stream_id, chunk.seq
        stream = self.store.get(stream_id, chunk.prefetched)
        if stream is None:
            if seq != 1:
                raise SeqGap(stream_id, seq, 1)
            stream = self._create(stream_id)
        if chunk.group is not None:
            stream.group = chunk.group
        if seq <= stream.accepted_seq:
            return self.intake.duplicate(stream, seq, chunk.durable), None
        if seq != stream.accepted_seq + 1:
            raise SeqGap(stream_id, seq, stream.accepted_seq + 1)
        item = self.intake.accept(stream, seq, chunk.raw, flush=chunk.flush, durable=chunk.durable)
        return item.future, item

    def append(self, stream_id: str, seq: int, data: bytes | str, flush: bool = False, durable: bool = False,
               group: str | None = None) -> Ack:
        return self.submit_append(stream_id, seq, data, flush, durable, group).result()

    def flush(self, stream_id: str) -> Ack:
        """Process the stream's text tail now (a flush takes no seq and is idempotent)."""
        self._check_id(stream_id)
        return self._submit_tail(stream_id, flush=True).result()

    def _submit_tail(self, stream_id: str, flush: bool = False, close: bool = False) -> Future:
        """Queue the stream's text tail (flush, or close: an unfinished character too) as an item without seq."""
        prefetched = self.store.prefetch(stream_id)
        with self._lock:
            self._check_running()
            stream = self._resident(stream_id, prefetched)
            item = self.intake.accept(stream, None, b"", flush=flush, close=close)
        self._hand_over([item])
        return item.future

    # ------------------------------------------------------------------------------------------
    # outputs

    def embedding(self, stream_id: str, role: str = "query") -> np.ndarray:
        """The stream embedding (float32 [embed_dim], L2-normalised) after all accepted chunks, in `role`:
        "query" as the model computes it, "document" with the model's document map applied (a whole document
        for an index; streamret/model/document_map.py)."""
        self._check_id(stream_id)
        self.check_role(role)
        self._wait_applied(stream_id)
        prefetched = self.store.prefetch(stream_id)
        with self._lock:
            plain = self.stream_embedding(self._settled(stream_id, prefetched)).copy()
        return self.as_role(plain, role)

    def encode(self, texts: str | Iterable[str], batch_size: int = 256, show_progress_bar: bool = False,
               normalize: bool = True, role: str = "query") -> np.ndarray:
        """One embedding per whole text, of any length: float32 [len(texts), embed_dim] ([embed_dim] for a str).

        Like sentence-transformers' `encode`. Each text is read as a temporary stream and gets exactly the
        stream embedding it would get appended in one chunk; `batch_size` texts are in the engine at once
        (the scheduler packs them into steps of up to max_step_tokens), and every temporary stream is closed
        when its text is done, also on an error. An empty list gives shape (0, embed_dim); an empty text the
        zero vector (it has no tokens). Embeddings are L2-normalised by the model's pooling; normalize=True
        rescales away rounding. show_progress_bar: a tqdm bar over texts. role: "query" (the default: queries,
        passages) or "document" (whole documents for an index: the model's document map applied; an empty text
        stays the zero vector), as `embedding`. Raises InvalidArgument for an item that is not a str or an
        unknown role, FailedPrecondition for "document" on a model without a document map, or the first text
        the engine could not embed (naming its index).
        """
        from ..batch.encode import encode_with_engine

        return encode_with_engine(self, texts, batch_size=batch_size, show_progress_bar=show_progress_bar,
                                  normalize=normalize, role=role)

    def segments(self, stream_id: str, with_embeddings: bool = True) -> list[Segment]:
        """Kept segments in document order, scored by cosine similarity to the stream embedding."""
        self._check_id(stream_id)
        self._wait_applied(stream_id)
        prefetched = self.store.prefetch(stream_id)
        with self._lock:
            stream = self._settled(stream_id, prefetched)
            return stream.segments.segments(self.stream_embedding(stream), with_embeddings)

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
        prefetched = self.store.prefetch(stream_id)
        with self._lock:
            stream = self._settled(stream_id, prefetched)
            applied_seq = stream.applied_seq
            picked = stream.segments.summary(self.stream_embedding(stream), k, self.config.mmr_lambda)
            state = self.store.read(stream_id) if mode == "generative" else None
        text = ""
        if mode == "generative":
            prompt = self.tokenizer.encode(self.config.summary_prompt)
            ids = self.runner.generate(state.to(self.model.device), prompt, max_new_tokens, self.tokenizer.eos_id)
            text = self.tokenizer.decode(ids)
        return Summary(stream_id, applied_seq, picked, text)

    # ------------------------------------------------------------------------------------------
    # helpers

    def _create(self, stream_id: str) -> Stream:
        stream = Stream(stream_id, self.codec.new_tracker())
        self.store.add_new(stream)
        return stream

    def _info(self, stream: Stream) -> StreamInfo:
        return StreamInfo(stream.id, stream.applied_seq, stream.durable_seq, stream.tokens, self.fingerprint)

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
