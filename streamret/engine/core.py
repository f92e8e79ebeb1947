"""The engine core: the step loop, in the shape of vLLM v1's EngineCore.

Each step is scheduled (scheduler.py: which streams' queued tokens, packed), gathered (state_store.py:
their states, on the model's device), launched (worker.py: one packed forward), finished (its results
waited for, the new states scattered back) and booked (`_apply`, vLLM's `update_from_output`: segments,
applied chunks, the durability policy, acks). The loop launches step k+1 before it finishes and books
step k, so on a GPU the host's share of the work overlaps the device's; two steps in flight never
share a stream, so the state store always holds each stream's state as of its booked chunks.

Threads: callers (any number), the step loop (one), the durable writer (one). One lock guards all
bookkeeping; the model runs outside it, so queries and appends never wait for a step. The public API
(engine.py) is a layer over this class; the loop itself reads nothing of it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from .. import gc_pauses
from ..errors import NotFound, StreamRetError, Unavailable
from ..model.checkpoint import model_fingerprint
from ..model.retnet import RetNetState
from ..model.spec import LoadedModel
from ..stack_sampler import StackSampler, step_sample_interval
from ..thread_cpu import thread_cpu_seconds
from .acks import AckThread, reject
from .config import Checkpoint, EngineConfig, default_step_overlap, default_step_tokens
from .durability import DurabilityPolicy, DurableStore
from .gil import quick_handoff
from .histogram import power_of_two_bucket
from .lock_profile import ProfiledRLock, engine_lock
from .part_clock import PartClock
from .record import StreamCodec
from .scheduler import Scheduler, StepPlan, WorkItem, fill_target
from .segments import ClosedSegment, StepRuns, StepSpans, book_step, keep_segments, step_runs
from .state_store import Prefetched, StateStore
from .stream import Stream
from .worker import ModelRunner, StepOutput

log = logging.getLogger("streamret.engine")

# stats()["step_streams_buckets"][i]: steps of at most 2**i streams (and more than 2**(i-1)); the last: more than 2**14
STEP_STREAMS_BUCKETS = 15
WIDE_STEP = 64  # issue 14: a step should run at least this many streams whenever that many can run
STEP_THREAD = "streamret-engine-step"  # the step loop's thread (stats()["step_samples"] samples it by this name)
ACK_THREAD = "streamret-engine-acks"  # the thread that settles a step's acks (acks.AckThread)


@dataclass(eq=False)
class _Step:
    """One step on its way through the loop: planned and gathered, launched, then booked."""

    plan: StepPlan
    ran_spans: StepSpans | None  # the spans of the streams in `ran`, as arrays
    runs: StepRuns | None  # the packed tokens of the streams in `ran` cut at their segment boundaries
    ran: list[str]  # streams with tokens, in the order of the model batch
    state: RetNetState | None = None
    out: StepOutput | None = None
    error: Exception | None = None

    def stream_ids(self) -> set[str]:
        return {w.stream_id for w in self.plan.work}


class EngineCore:
    """Many streams, one model, one device: the step loop and its lifecycle (checkpoint, shutdown, stats)."""

    def __init__(self, loaded: LoadedModel, state_dir: str | None = None, config: EngineConfig | None = None,
                 durable: DurableStore | None = None):
        """durable: a DurableStore to use instead of one at state_dir (a cluster worker passes its fenced
        store, streamret/cluster/fenced_store.py)."""
        config = config or EngineConfig()
        device_type = loaded.model.device.type
        if config.max_step_tokens is None:  # auto: by the model's device
            config = replace(config, max_step_tokens=default_step_tokens(device_type))
        if config.overlap_steps is None:
            config = replace(config, overlap_steps=default_step_overlap(device_type))
        self.config = config
        self.model = loaded.model
        self.fingerprint = loaded.fingerprint or model_fingerprint(self.model)
        self.roles = loaded.roles
        self.codec = StreamCodec(self.model.config, self.fingerprint, config)
        self.durable = durable if durable is not None else DurableStore(state_dir) if state_dir else None
        self.store = StateStore(self.model, self.codec, self._device_budget(), config.host_state_bytes, self.durable)
        self.scheduler = Scheduler(
            config.max_step_tokens, config.max_step_streams, config.max_pending_chunks_per_stream,
            config.max_pending_bytes_per_stream, config.max_pending_chunks, config.max_pending_bytes,
            config.max_stream_step_tokens, config.draining_step_chunks,
            fill_to=fill_target(config.step_fill, config.max_step_tokens, config.graph_token_step),
            whole_chunk_tokens=config.step_whole_chunk_tokens,
        )
        step_state_bytes = config.max_step_state_bytes or (4 << 30 if self.model.device.type == "cuda" else 1 << 30)
        # tokenizer processes (EngineConfig.tokenize_procs): auto on a GPU, whose step thread wants the GIL often
        self.tokenize_procs = (self.model.device.type == "cuda" if config.tokenize_procs is None
                               else config.tokenize_procs)
        self._max_step_streams = max(1, step_state_bytes // self.store.state_bytes)
        # the graphs of every step shape this engine can run: no more streams than a step's state budget holds
        self.runner = ModelRunner(self.model, config.chunk_size, config.cuda_graphs,
                                  (min(config.max_step_streams, self._max_step_streams), config.max_step_tokens)
                                  if config.capture_graphs_at_start else None, config.device_wait,
                                  config.graph_token_step)
        self._lock = engine_lock()  # an RLock (profiled per call site under STREAMRET_LOCK_PROFILE=1)
        self._has_work = threading.Condition(self._lock)  # the loop waits here for chunks
        self._applied = threading.Condition(self._lock)  # callers wait here for their chunks to apply
        self.durability = DurabilityPolicy(config, self.durable, self.codec, self.store, self._lock)
        if self.durable is not None:
            self.store.recorder = self.durability.record_eviction
        # the step loop waits for chunks now (nothing queued, no step running): the tokenize stage then hands what
        # it has over at once instead of gathering more (engine.py); _went_idle is told as the loop starts waiting
        self.waiting_for_work = False
        self._went_idle: Callable[[], None] = lambda: None
        # whether nothing waits to be cut or is being cut (the tokenize stage's `idle`; engine.py): the draining-step
        # cap plays only then (EngineConfig.draining_step_chunks)
        self._nothing_to_cut: Callable[[], bool] = lambda: True
        self._stage_stats: Callable[[], dict] = dict  # the tokenize stage's counters in `stats` (engine.py)
        self._stopping = False  # no new work is taken (a shutdown, or a checkpoint that ran out of time)
        self._abort = False
        self._closed = False  # shutdown ran
        self._broken: BaseException | None = None  # set when the step loop died: every call then fails fast
        self._tokens_processed = 0
        self._steps = 0
        self._step_streams = 0  # streams summed over steps: / steps = streams per step
        self._host_s = 0.0  # step-loop time in scheduling, gathering and booking (overlaps the device)
        # the step loop's seconds by part (stats()["loop_parts_seconds"], and its thread's CPU seconds in them:
        # "loop_parts_cpu_seconds"): where a step's host time goes
        self._parts = PartClock()
        self._recent_streams: deque[int] = deque(maxlen=256)
        self._step_streams_buckets = [0] * (STEP_STREAMS_BUCKETS + 1)  # a histogram of streams per step
        # steps planned while >= WIDE_STEP streams had work: [all, of them narrower than WIDE_STEP]; the same
        # counting only the streams a step could pick (not in the step still running)
        self._wide_waiting = [0, 0]
        self._wide_runnable = [0, 0]
        self._recent_tokens: deque[int] = deque(maxlen=256)
        # the last items applied: (applied at, ms from accepted to queued (the tokenize stage), ms from queued to
        # applied (waiting for a step, the step, booking), stream id, seq, and of the tokenize stage's ms: from
        # accepted to its batch's start (waiting for a thread), and the batch's cutting; None for an item the stage
        # did not cut), time.monotonic: a bench takes those of its window, and joins them by (stream id, seq) with
        # the server's stamps of the same chunks (ack legs)
        self._recent_items: deque[tuple[float, float, float, str, int | None, float | None, float | None]] = deque(
            maxlen=2048)
        # the loop's last waits for work with no step in flight: (began at, seconds), time.monotonic: a bench bins
        # them over a part to tell an engine starved mid-run from one idle at a part's start and end
        self._recent_idle: deque[tuple[float, float]] = deque(maxlen=4096)
        gc_pauses.watch()
        self._sample_every = step_sample_interval()  # (a bad STREAMRET_STEP_SAMPLES fails here, first)
        self._acks = AckThread(ACK_THREAD)  # a step's acks go out while the loop books the rest of it
        self._thread = threading.Thread(target=self._loop, name=STEP_THREAD, daemon=True)
        self._thread.start()
        self._samplers: dict[str, StackSampler] = {}  # stats() key -> the sampler of one of the engine's threads
        self._sample("step_samples", self._thread)

    def _sample(self, key: str, thread: threading.Thread) -> None:
        """With STREAMRET_STEP_SAMPLES, sample `thread`'s stack by line; stats()[key] carries the counts."""
        if self._sample_every is not None:
            self._samplers[key] = StackSampler(thread, self._sample_every, lines=True).start()

    def _device_budget(self) -> int:
        if self.config.device_state_bytes is not None:
            return self.config.device_state_bytes
        if self.model.device.type == "cuda":
            return torch.cuda.mem_get_info(self.model.device)[0] // 2
        return 1 << 30

    # ------------------------------------------------------------------------------------------
    # lifecycle

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
        with self._lock:
            written = self.durability.write_all()
        self.durability.drain()
        with self._lock:
            streams = len(self.store.streams)
            not_durable = streams if self.durable is None else sum(
                1 for s in self.store.streams.values() if s.since_durable and not s.ephemeral)
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
        self._acks.close()
        self.durability.close()
        return report

    def durable_writable(self) -> bool | None:
        """False while the durable store refuses writes (probed here until it takes them again), None without
        a durable store."""
        return self.durability.writable()

    def stats(self) -> dict:
        """Counters for metrics and health. durable_writable: as `durable_writable()`."""
        writable = self.durable_writable()
        # the whole process's threads by role (engine processes: that process's), and its tokenizer processes
        threads = thread_cpu_seconds(self.tokenize_procs)
        stage = self._stage_stats()  # (the stage's own lock, not taken under the engine's)
        with self._lock:
            return {
                "streams": self.store.counts(),
                "tokens_processed": self._tokens_processed,
                "steps": self._steps,
                "step_streams": self._step_streams,
                "recent_step_batch_sizes": list(self._recent_streams),
                "step_streams_buckets": list(self._step_streams_buckets),
                "wide_steps_waiting": list(self._wide_waiting),  # [steps, of them narrower] (WIDE_STEP)
                "wide_steps_runnable": list(self._wide_runnable),
                "recent_step_tokens": list(self._recent_tokens),
                "recent_items": list(self._recent_items),
                "recent_idle": list(self._recent_idle),
                "queue_depth": self.scheduler.pending_chunks,
                "queue_tokens": self.scheduler.pending_tokens,
                "queue_bytes": self.scheduler.pending_bytes,
                "device_stream_capacity": self.store.device.capacity,
                # step-loop time in the model runner: launching, and waiting for results
                "loop_model_seconds": self._parts.wall["launch"] + self._parts.wall["wait"],
                "loop_host_seconds": self._host_s,
                "cuda_graph_captures": self.runner.graphed.captures if self.runner.graphed is not None else 0,
                "loop_parts_seconds": self._parts.wall_now(),
                "loop_parts_cpu_seconds": dict(self._parts.cpu),
                "durable_write_errors": self.durability.writer.errors if self.durability.writer else 0,
                "durable_writable": writable,
                **gc_pauses.pauses(),  # the whole process's: a collection stops the step loop too
                "thread_cpu_seconds": threads,
                **({"lock_sites": self._lock.snapshot()} if isinstance(self._lock, ProfiledRLock) else {}),
                **{key: sampler.counts() for key, sampler in self._samplers.items()},
                **stage,
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
                            reject(item.future, Unavailable("the engine stopped after an internal error"))
            self._applied.notify_all()

    def _steps_forever(self) -> None:
        """Launch step k+1, then book step k while the device runs k+1 (the two never share a stream); or book k
        first, as EngineConfig.overlap_steps says (`_overlap`)."""
        inflight: _Step | None = None
        while True:
            t_lock = self._parts.now()
            with self._lock:
                t_idle = self._parts.add("lock", t_lock)
                waited = False
                while inflight is None and (self._abort or not self.scheduler.has_work()):
                    # a stop waits for chunks still being tokenized (counted, not queued yet) unless aborting
                    if self._stopping and (self._abort or not self.scheduler.pending_chunks):
                        return
                    if not waited:
                        self.waiting_for_work = True
                        self._parts.begin("idle", t_idle)
                        idle_from = time.monotonic()
                        self._went_idle()
                    self._has_work.wait(timeout=self.durability.sweep_due())
                    self.durability.sweep()
                    waited = True
                if waited:  # nothing to run: the loop waited for work (under a closed-loop load, between waves)
                    self.waiting_for_work = False
                    self._parts.add("idle", t_idle)
                    self._recent_idle.append((idle_from, time.monotonic() - idle_from))
                t0 = time.perf_counter()
                step = self._next_step(inflight) if self._overlap(inflight) else None
                self._host_s += time.perf_counter() - t0
            # (torch and numpy calls release the GIL: under a short interval busy threads give it back soon)
            with quick_handoff(self.config.step_switch_interval_s):
                if step is not None:
                    self._launch(step)
                if inflight is not None:
                    self._finish(inflight)
            inflight = step

    def _overlap(self, inflight: _Step | None) -> bool:
        """Whether to plan the next step before booking `inflight` (lock held; EngineConfig.overlap_steps)."""
        if inflight is None:
            return True
        mode = self.config.overlap_steps
        return mode == "always" or (mode == "queued"
                                    and self.scheduler.pending_tokens >= self.scheduler.max_step_tokens)

    def _next_step(self, inflight: _Step | None) -> _Step | None:
        """Schedule and gather the next step (lock held); None when nothing can run beside `inflight`."""
        if self._abort or not self.scheduler.has_work():
            return None
        busy = inflight.stream_ids() if inflight else set()
        room = min(self._max_step_streams, self.store.device.capacity - (len(inflight.ran) if inflight else 0))
        if room < 1:
            return None
        t0 = self._parts.now()
        plan = self.scheduler.schedule(room, exclude=busy, draining=self._nothing_to_cut())
        if not plan.work:
            return None
        ran = [w for w in plan.work if w.n_tokens]
        step = _Step(plan, plan.step_spans() if ran else None, None,
                     [w.stream_id for w in ran])
        t1 = self._parts.add("schedule", t0)
        if ran:  # the streams of a step are not in flight: their trackers hold the segments open before it
            step.runs = step_runs([self.store.streams[sid].segments for sid in step.ran], step.ran_spans)
        if step.ran:
            try:
                with quick_handoff(self.config.step_switch_interval_s):
                    step.state = self.store.gather(step.ran)
            except Exception as e:
                step.error = e
        self._parts.add("gather", t1)
        return step

    def _launch(self, step: _Step) -> None:
        """Run the model on a step (no lock: on a GPU this returns once the kernels are queued)."""
        if step.error is not None or not step.ran:
            return
        t0 = self._parts.now()
        try:
            ids, lens = step.plan.packed()
            step.out = self.runner.run(ids, lens, step.state, step.runs)
        except Exception as e:
            step.error = e
        step.state = None
        self._parts.add("launch", t0)

    def _finish(self, step: _Step) -> None:
        """Wait for a step's results, scatter its states and book it (its acks go out as it is booked)."""
        t0 = self._parts.now()
        if step.out is not None:
            try:
                step.out.wait()
            except Exception as e:
                step.error = e
        t1 = self._parts.add("wait", t0)
        with self._lock:
            t_locked = self._parts.add("lock", t1)
            if step.error is not None:
                self.store.unpin(step.ran)
                self._fail_plan(step.plan, step.error)
            else:
                if step.ran:
                    self.store.scatter(step.ran, step.out.state)
                self._parts.add("scatter", t_locked)
                self._apply(step, step.out)
            self.durability.sweep()
        self._host_s += self._parts.now()[0] - t1[0]

    def _apply(self, step: _Step, out: StepOutput | None) -> None:
        """Book a finished step (vLLM's update_from_output): segments, applied items, durability; its acks that
        need no record go to the ack thread as soon as its items are applied."""
        plan = step.plan
        done: dict[Stream, list[WorkItem]] = {}
        t0 = self._parts.now()
        ran = [self.store.streams[sid] for sid in step.ran]
        trackers = [st.segments for st in ran]
        booked = book_step(trackers, step.ran_spans, step.runs, out.open_sums) if ran else None
        for i, st in enumerate(ran):  # (a copy: on a GPU the step's arrays are a staging buffer, reused)
            st.embedding = out.embeddings[i].copy()
        t0 = self._parts.add("book_spans", t0)
        flushed = []  # (stream, segments closed by pieces without tokens)
        now = time.monotonic()
        for work in plan.work:
            stream = self.store.streams[work.stream_id]
            if not work.n_tokens:  # only pieces without tokens (a flush): no sums
                closed = stream.segments.add_spans(work.spans(), None)
                if closed:
                    flushed.append((stream, closed))
            for s in work.slices:
                if s.completes:
                    item = s.item
                    cut = item.cutting_at > 0  # (else it did not go through the tokenize stage)
                    self._recent_items.append((now, 1e3 * (item.queued_at - item.accepted_at),
                                               1e3 * (now - item.queued_at), item.stream_id, item.seq,
                                               1e3 * (item.cutting_at - item.accepted_at) if cut else None,
                                               1e3 * (item.cut_at - item.cutting_at) if cut else None))
                    stream.apply(item)
                    self.scheduler.complete(item)
                    done.setdefault(stream, []).append(item)
                else:  # part of a chunk longer than the step: the state is past applied_seq until it completes
                    stream.partial_tokens += s.end - s.start
        # the acks to send now go out while the step is booked on: the rest waits for the engine lock, which a
        # reader takes (`AckThread`); the records due are written once the segments they hold are kept
        t1 = self._parts.add("apply_items", t0)
        resolved, records = self.durability.book(done)
        self._acks.put(resolved)
        t1 = self._parts.add("acks", t1)
        if booked is not None:
            keep_segments(trackers, booked.bounds, booked.texts, booked.byte_spans, out.run_embeddings[booked.runs],
                          out.close_embeddings[booked.runs])
        for stream, closed in flushed:
            self._keep_flushed(stream, closed)
        t2 = self._parts.add("book_segments", t1)
        self._steps += 1
        self._step_streams += len(plan.work)
        self._tokens_processed += plan.n_tokens
        self._recent_streams.append(len(plan.work))
        self._step_streams_buckets[power_of_two_bucket(len(plan.work), STEP_STREAMS_BUCKETS)] += 1
        for counts, n in ((self._wide_waiting, plan.waiting), (self._wide_runnable, plan.runnable)):
            if n >= WIDE_STEP:
                counts[0] += 1
                counts[1] += len(plan.work) < WIDE_STEP
        self._recent_tokens.append(plan.n_tokens)
        for stream, items in records:
            self.durability.write(stream, items)
        self._applied.notify_all()
        self._parts.add("book_items", t2)

    def _keep_flushed(self, stream: Stream, closed: list[ClosedSegment]) -> None:
        """Keep the segments a flush closed (no tokens ran: their sums are the tracker's, on the host, and are
        embedded there: the lock is held, and the device may be running a step)."""
        embeddings = self.runner.embed(torch.from_numpy(np.stack([c.pool_sum for c in closed])),
                                       torch.tensor([c.pool_count for c in closed]))
        stream.segments.keep_many([c.text for c in closed],
                                  np.array([(c.start_byte, c.end_byte) for c in closed], np.int64),
                                  embeddings, self.stream_embedding(stream))

    def stream_embedding(self, stream: Stream) -> np.ndarray:
        """A resident stream's embedding as its state stands (lock held): booked with its last step, or computed
        from its state (then kept) when no step ran it since it was created, imported or loaded."""
        if stream.embedding is None:
            state = self.store.read(stream.id)
            stream.embedding = self.runner.embed(state.pool_sum, state.pool_count)[0]
        return stream.embedding

    def _fail_plan(self, plan: StepPlan, error: Exception) -> None:
        log.exception("engine step over %d streams failed", len(plan.work), exc_info=error)
        why = f"the model step failed ({type(error).__name__})"
        if isinstance(error, torch.cuda.OutOfMemoryError):
            # what the step got back to the device, so that the other engine processes there may use it
            torch.cuda.empty_cache()
            why = ("the model step ran out of device memory (the device is shared by every engine process and by "
                   "any other process there: lower --engine-procs or --max-step-tokens)")
        for work in plan.work:
            stream = self.store.streams[work.stream_id]
            back = stream.applied_seq if stream.at_boundary else stream.durable_seq  # (see _fail_stream)
            where = "is back at" if stream.at_boundary else "held part of a chunk: it goes back to its durable record,"
            self._fail_stream(stream, Unavailable(
                f"{why}; stream {stream.id!r} {where} seq {back}: resend from seq {back + 1}"
            ))

    def _fail_stream(self, stream: Stream, error: StreamRetError) -> None:
        items = stream.rewind()
        self.scheduler.cancel(stream.id, items)
        owed, stream.owed_record = stream.owed_record, []
        for item in items:
            reject(item.future, error)
        for waiter in owed:
            reject(waiter.future, error)
        if not stream.at_boundary:
            # Its state holds part of a chunk that is dropped now: continuing from it would apply that part
            # twice. The stream leaves memory; it reloads from its durable record (durable_seq), or, without
            # one, starts again empty, and the client resends from there.
            # a batch temporary has no record to go back to and is closed by its job: nothing for a user to do
            log.log(logging.DEBUG if stream.ephemeral else logging.WARNING,
                    "stream %r dropped from memory: its state held part of a chunk that was not applied; "
                    "it goes back to its durable record (durable_seq %d)", stream.id, stream.durable_seq)
            stream.partial_tokens = 0
            self.store.remove(stream.id)
            if self.durable is not None:
                self.store.evicted.add(stream.id)
        self._applied.notify_all()

    # ------------------------------------------------------------------------------------------
    # callers and the loop

    def _resident(self, stream_id: str, prefetched: Prefetched | None = None) -> Stream:
        stream = self.store.get(stream_id, prefetched)
        if stream is None:
            raise NotFound(f"stream {stream_id!r} does not exist; append to it or open it first")
        return stream

    def _settled(self, stream_id: str, prefetched: Prefetched | None = None) -> Stream:
        """The resident stream once its state is at a chunk boundary (lock held): outputs and records then
        describe exactly the chunks up to applied_seq, never part of a chunk split across steps. Its queued chunks
        then end its work at their ends (not `split_after`), so that the wait lasts until the chunk held in part
        completes, not until the stream's queue runs dry."""
        while True:
            stream = self._resident(stream_id, prefetched)
            if stream.at_boundary or self._broken is not None:
                return stream
            for item in stream.pending:
                item.split_after = False
            self._applied.wait()

    def _wait_applied(self, stream_id: str) -> None:
        """Block until every chunk accepted so far for this stream is applied (or failed)."""
        with self._lock:
            stream = self.store.streams.get(stream_id)
            if stream is None or not stream.pending:
                return
            last = stream.pending[-1]
            self._applied.wait_for(lambda: last not in stream.pending or self._broken is not None)

    def _check_running(self) -> None:
        if self._broken is not None:
            raise Unavailable("the engine stopped after an internal error (see the server log); restart the server: "
                              "every stream is safe up to its durable_seq")
        if self._stopping:
            raise Unavailable("the engine is shutting down; retry on another worker")
