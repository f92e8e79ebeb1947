"""Engine settings and the small result types its API returns."""

from __future__ import annotations

from dataclasses import dataclass, fields

from .gil import switch_interval_s
from .segments import Segment
from .text import SEGMENT_MODES

DEVICE_WAITS = ("sleep", "spin")
STEP_OVERLAPS = ("always", "queued", "never")
STEP_FILLS = ("off", "padding", "budget")  # EngineConfig.step_fill


def default_step_overlap(device_type: str) -> str:
    """EngineConfig.overlap_steps when it is None (auto), for an engine on a device of this type. On a GPU
    "queued": the device runs a step while the host books the one before only while a full step's tokens wait (on
    the H200 against "always", two pairs of each part: half-load ack p99 lower in both, queued-to-applied p50 7.3 ->
    5.8-6.2 ms, no part lower beyond 5%; bench/RESULTS.md, session 30); on the CPU the forward runs in the step
    thread, so planning the next step first only delays the acks of the one before by a whole forward ("never")."""
    return "queued" if device_type == "cuda" else "never"


def default_step_tokens(device_type: str) -> int:
    """EngineConfig.max_step_tokens when it is None (auto), for an engine on a device of this type ("cuda", "cpu").
    A GPU step's host work (launches, booking its streams) grows less than its tokens, so larger steps read more:
    on the H200 with 12 engine processes 32,768 against 16,384 tokens gave the engine +23-30% at 1,024 streams (the
    step thread's CPU a token 0.77 -> 0.54 us), the service at saturation +28% and long documents +24%
    (bench/RESULTS.md, session 28). On the CPU the model's time grows with the step, and a larger one only delays
    the acks of the streams in it."""
    return 32768 if device_type == "cuda" else 16384


@dataclass(frozen=True)
class EngineConfig:
    # scheduler: one step packs at most this many tokens / streams; max_step_tokens None (auto): `default_step_tokens`
    # of the engine's device
    max_step_tokens: int | None = None
    max_step_streams: int = 256
    # fairness: a step's tokens are split max-min fairly among the streams it picks (round-robin over
    # groups, e.g. tenants, then over streams), so a busy stream alone fills a step and many busy streams
    # share it (groups share it first, then each group's streams: in one group the fair share of a busy
    # stream is thus at least max_step_tokens / max_step_streams, 64 tokens on the CPU by default and 128 on a
    # GPU, at least the chunkwise kernel's chunk); this caps one stream's share of a step on top of that (None:
    # the fair share only)
    max_stream_step_tokens: int | None = None
    # pipelining at light load: while the queue holds fewer tokens than a step and nothing is being cut, a step
    # would take every queued chunk, and then the tokenize stage and the step take turns (each step's acks bring the
    # clients' next chunks, cut while nothing else is queued, and those make the next step). With this set a stream
    # gives such a step at most this many of its queued chunks: the rest makes the next step at once, while the
    # chunks sent after this step's acks are cut (a double buffer, with 2 and clients that keep 4 chunks in flight);
    # while chunks are being cut (a service's steady arrivals) more work is coming anyway, and steps stay whole.
    # None: off. On the CPU (bench/RESULTS.md, session 32; 6 streams of 4 x 2 KB chunks in flight): the closed loop
    # of bench/tokenize_join_loop.py --step-chunks 2 +18-27% MB/s, round trip p50 20 -> 15.6 ms; the real engine with
    # a sleeping stand-in for the model and real text +3%, +3%, -3% (three pairs, session 49: session 32's +12-17% had
    # cut its chunks from the text's gzip bytes). On an H100 (session 51, 9 engine processes, two pairs): 64 streams
    # -7.2% and -6.7% (steps of 6 streams against 4.7, the round trip no shorter), 1,024 streams -1% and +6%: off.
    draining_step_chunks: int | None = None
    # a step's split (Scheduler's whole_chunk_tokens): each picked stream first gets what is left of its first queued
    # chunk up to this many tokens, streams are picked while those fit the step, and the rest of the budget is split
    # fairly. Fair shares alone cut every chunk past the water level: on an H100 at 1,024 streams, steps of 77-91
    # streams held 25 k tokens (2 KB chunks of 450-500 tokens), and the batch job's 929-token short documents ran
    # as 42 streams of about 500 tokens a step, so such a chunk paid a stream's host work in two steps
    # (bench/RESULTS.md, session 52). At most max_step_tokens / 64 keeps 64 streams a step whenever that many have
    # work. None: off. On an H100 (session 53, 9 engine processes, two pairs each against off): 1,024 batch long
    # documents +7.5% and +8.4%, short -3.1% and +15.6%, engine at 1,024 streams +7.6% and -1.8%, and steps narrower
    # than 64 while 64 streams could run (112 of 122, 143 of 156); 512 engine at 1,024 streams +1.9% and +5.9%, at 64
    # streams -12.8% and -8.0%, batch long -14.5% and +5.2%.
    step_whole_chunk_tokens: int | None = None
    # a stream's fair share of a step stops at a chunk boundary once it completes a chunk (what its durable record
    # holds), so a step's tokens fall short of its budget, and with CUDA graphs the step runs padded to its token
    # bucket (streamret/model/graphs.py: multiples of 4,096 past 4,096 tokens) anyway. "padding": the step takes
    # its streams' further queued tokens into that padding, which costs the device nothing more; "budget": up to
    # max_step_tokens (bigger steps); either way whole chunks, or the rest of the one chunk a stream's step splits,
    # in service order, within max_stream_step_tokens, never while a draining cap applies, never another stream.
    # "off" until measured on a GPU (a step of 1,024 streams held 24.7 k tokens on average on the H100, session 37;
    # `bench/step_fill.py` models the effect).
    step_fill: str = "off"
    # CUDA graphs pad a step to its token bucket: powers of two up to this many tokens, then multiples of it
    # (streamret/model/graphs.py, token_bucket). Finer means less padding where steps are small (64 streams over 9
    # engines: steps of about 10.7 k tokens, padded to 12,288 at 4,096; `bench/step_fill.py --token-step` models
    # the share) and more graphs, all captured at the start (123 at 4,096, 186 at 2,048, 321 at 1,024 for a GPU's
    # step budget). 4,096 until measured on a GPU.
    graph_token_step: int = 4096
    # backpressure: past these bounds append raises TooBusy; a larger chunk raises ResourceExhausted
    max_chunk_bytes: int = 1 << 20
    max_pending_chunks_per_stream: int = 64
    max_pending_bytes_per_stream: int = 16 << 20
    max_pending_chunks: int = 1 << 16
    max_pending_bytes: int = 512 << 20
    # tokenizing: accepted chunks are cut into pieces (sentences) and tokenized on this many engine threads, each
    # stream's on one of them at a time, many chunks per tokenizer call
    tokenizer_threads: int = 2
    # ... each handing its batches to a tokenizer process of its own (streamret/engine/tokenize_worker.py), so that
    # the cuts' and the tokenizer's Python do not hold the GIL that the step thread needs between its CUDA calls;
    # None (auto): on a GPU, not on the CPU (H200, 12 engine processes: tokenizing there, engine +36-41% tokens/s
    # at 1,024 streams, service at saturation +39%, session 20; the cuts there too, engine +7-33% at 64 streams
    # over three runs, session 22: bench/RESULTS.md)
    tokenize_procs: bool | None = None
    # ... a thread cuts and tokenizes at most this many bytes of waiting chunks in one call: a chunk that arrives
    # as a call starts waits for all of it, and a wave of large chunks (a batch's long documents: 4 x 64 KiB a
    # document) is cut in one long call before the first step (bench/RESULTS.md: 1 MiB calls, accepted-to-queued
    # p99 0.2-0.3 s at saturation, session 22; 256 KiB cut that p99 by a quarter but not the ack's, session 23;
    # 128 KiB with sleeping device waits against 1 MiB and spinning, three pairs on the H200: engine at 1,024
    # streams +3-9% in all three, no part lower beyond 5% in two, session 31)
    tokenize_batch_bytes: int = 128 << 10
    # ... and while one thread is cutting, another takes waiting chunks only once this many bytes wait (0: at
    # once), or once the oldest has waited tokenize_join_wait_s: trickling chunks then gather into
    # one batch, and steps hold more streams. A thread that would leave the other too little to join on takes it
    # all. On the H200 (bench/RESULTS.md, session 26, two pairs at 1e8 tokens) 32 KiB held 4.6-4.8 streams a
    # step at 64 streams as one thread does (two threads, 0: 2.3), +14-24% tokens/s, and kept two threads'
    # figure at 1,024 streams (within the spread)
    tokenize_join_bytes: int = 32 << 10
    # ... and a waiting chunk is taken anyway once this many seconds have passed since it was accepted, so that one slow
    # or huge batch does not hold up other streams' chunks (TokenizeStage join_wait_s). Under a trickle too thin to
    # reach tokenize_join_bytes (the service at half load: 1,024 streams x 4.7 chunks of 2 KB a second over 9 engine
    # processes, about 1 KB a ms each) a chunk that arrives while a thread cuts may wait this long, which is part of its
    # ack. 3 ms against the 10 ms before, on an H100 (bench/RESULTS.md, session 54, two pairs): the half-load ack p99
    # 53.0 / 53.2 ms against 63.3 / 53.8, its tokenize leg p50 about 1 ms lower; tokens/s of the engine at 64 streams
    # +1.7% / -3.4%, the service at half load +4.5% / -4.1% and at saturation +4.3% / -3.5%, steps as wide.
    tokenize_join_wait_s: float = 0.003
    # ... and where a thread would take all that waits because what it left would make no other join, it takes its
    # share and the idle threads the rest at once, each its share, the batches delivered together (`TokenizeStage`
    # split_bursts): meant to cut a burst of chunks (a step's acks answered at once) in a fraction of the time (half
    # with two threads) and still make one step of it. On the H200 (bench/RESULTS.md, 1e8 tokens, two pairs each):
    # on session 31's slow host (tokenizer processes 0.64-0.90 us a token), with sleeping waits and 128 KiB calls,
    # the tokenize leg at 64 streams -28%, 64 streams +17% / +21%, 1,024 +4% / +1%; on session 30's fast host
    # (0.4 us a token, before those two) +7% / +2% at 64 streams and -4% / -13% at 1,024 while that machine
    # drifted; four threads read -8 to -11% at 64 streams there
    tokenize_split_bursts: bool = True
    # text: undecoded tail bound per stream (see text.py for the policy past it)
    max_tail_bytes: int = 4096
    # segments: "sentence" or "chunk"; memory per stream is bounded by the next three
    segment_by: str = "sentence"
    # the most relevant segments a stream keeps for its summary: when a new one would pass this, the three
    # quarters of all most relevant to the stream as it stood when that one closed stay (so a stream is ranked
    # once every few segments, and what stays does not depend on its steps)
    max_kept_segments: int = 64
    max_segment_text_bytes: int = 512
    # sentence mode: a sentence longer than this (stream bytes from its first non-space character to its
    # cut) is cut at a space within it (chunk mode: each piece of text an append hands out is a segment)
    max_segment_bytes: int = 1024
    mmr_lambda: float = 0.7  # extractive summary: weight of salience against redundancy
    summary_prompt: str = "\n\nTL;DR:"  # generative summary: decoded after this prompt
    # state tiers: None = auto (CUDA: half the free GPU memory at start; CPU: 1 GiB)
    device_state_bytes: int | None = None
    # states one step may gather (each step copies them in and out, and two steps can be in flight):
    # bounds the streams per step for large states; None = auto (4 GiB on CUDA, 1 GiB on the CPU)
    max_step_state_bytes: int | None = None
    host_state_bytes: int = 4 << 30
    # durable records: after every N applied chunks of a stream (0 = not by count) and/or when the
    # oldest undurable change of a stream is older than T seconds (None = not by time)
    durable_every_chunks: int = 1
    durable_every_s: float | None = None
    # model
    chunk_size: int = 64
    cuda_graphs: bool = True  # on a GPU, each step's forward replays a CUDA graph of its shape bucket
    # ... every bucket's graph captured when the engine starts (a second or two), not at the first step that
    # needs it (a stall of tens of ms for the streams of that step)
    capture_graphs_at_start: bool = True
    max_stream_id_bytes: int = 1024
    # a step's gather, launch and finish (its torch and numpy calls, the device wait, the booking) run under this
    # GIL switch interval, so that busy Python threads hand the GIL back soon after each call (engine/gil.py);
    # None: the process's own
    step_switch_interval_s: float | None = 1e-4
    # on a GPU, how the step thread waits for a step's results: "sleep" (a blocking CUDA event: the core free
    # meanwhile) or "spin" (CUDA's default for one context a process: a core busy through the wait). With twelve
    # engine processes' steps sharing the device, a step's wait is a large share of its wall time (2.6-9.9 ms a
    # step, 50-100% of it CPU when spinning; session 30's whole list): sleeping gives those cores to the tokenizer
    # processes and the fronts. On the H200 (bench/RESULTS.md, session 31, with 128 KiB tokenize calls, three
    # pairs) the step threads' CPU a token 0.55-0.62 -> 0.42-0.50 us, engine at 1,024 streams +3-9%; sessions 11,
    # 21 and 25, on hosts whose CPU went elsewhere, read no difference beyond their spread
    device_wait: str = "sleep"
    # the step loop plans and launches step k+1 before it books step k (the device runs k+1 meanwhile, but k's acks
    # wait for k+1's planning and launch, and k's streams cannot be in k+1): "always"; "queued": only while a full
    # step's tokens (max_step_tokens) wait in the queue, i.e. when the device is the bound, else book k first
    # (its acks a step sooner, its streams free for k+1); "never": book every step before planning the next.
    # None (auto): `default_step_overlap` of the engine's device
    overlap_steps: str | None = None

    @property
    def text_params(self) -> dict:
        """A stream's text front's settings: TextAssembler's keyword arguments but the snapshot."""
        return dict(max_tail_bytes=self.max_tail_bytes, segment_by=self.segment_by,
                    max_segment_bytes=self.max_segment_bytes)

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if (isinstance(v, int) and not isinstance(v, bool) and f.name not in ("durable_every_chunks",
                                                                                   "step_switch_interval_s",
                                                                                   "tokenize_join_bytes")
                    and v < 1):
                raise ValueError(f"EngineConfig.{f.name} must be >= 1, got {v}")
        if self.durable_every_chunks < 0:
            raise ValueError(f"durable_every_chunks must be >= 0 (0 = not by count), got {self.durable_every_chunks}")
        if self.step_switch_interval_s is not None:  # None: the process's interval unchanged
            switch_interval_s(self.step_switch_interval_s, "EngineConfig.step_switch_interval_s")
        if self.durable_every_s is not None and self.durable_every_s <= 0:
            raise ValueError(f"durable_every_s must be > 0 or None, got {self.durable_every_s}")
        if self.device_wait not in DEVICE_WAITS:
            raise ValueError(f"device_wait={self.device_wait!r}; use one of {DEVICE_WAITS}")
        if self.overlap_steps is not None and self.overlap_steps not in STEP_OVERLAPS:
            raise ValueError(f"overlap_steps={self.overlap_steps!r}; use one of {STEP_OVERLAPS} or None (auto)")
        if self.step_fill not in STEP_FILLS:
            raise ValueError(f"step_fill={self.step_fill!r}; use one of {STEP_FILLS}")
        if self.graph_token_step < 64 or self.graph_token_step & (self.graph_token_step - 1):
            raise ValueError(f"graph_token_step={self.graph_token_step}: a power of two of at least 64 (4096 by "
                             "default; 1024 or 2048 pad small steps less)")
        if self.segment_by not in SEGMENT_MODES:
            raise ValueError(f"segment_by={self.segment_by!r}; use one of {SEGMENT_MODES}")
        if not 0.0 <= self.mmr_lambda <= 1.0:
            raise ValueError(f"mmr_lambda must lie in [0, 1], got {self.mmr_lambda}")
        if not self.summary_prompt:
            raise ValueError("summary_prompt must not be empty: decoding starts from its last token")
        if not 0.0 <= self.tokenize_join_wait_s <= 1.0:
            raise ValueError(f"tokenize_join_wait_s must lie in [0, 1] seconds (0: an idle tokenize thread never waits "
                             f"for a busy one), got {self.tokenize_join_wait_s}")
        if self.tokenize_join_bytes < 0:
            raise ValueError(f"tokenize_join_bytes must be >= 0 (0: an idle tokenize thread takes waiting chunks at "
                             f"once), got {self.tokenize_join_bytes}")
        if self.max_tail_bytes < 4:
            raise ValueError(f"max_tail_bytes must be >= 4 (one UTF-8 character), got {self.max_tail_bytes}")


@dataclass(frozen=True)
class Ack:
    stream_id: str
    seq: int  # the acknowledged chunk (a flush without data acks the stream's applied_seq)
    applied_seq: int
    durable_seq: int  # chunks up to here survive a crash; the client may forget them
    tokens: int  # tokens applied to the stream so far
    duplicate: bool = False  # seq had been accepted before; not applied again


@dataclass(frozen=True)
class StreamInfo:
    stream_id: str
    applied_seq: int
    durable_seq: int
    tokens: int
    model_fingerprint: str


@dataclass(frozen=True)
class Summary:
    stream_id: str
    applied_seq: int
    segments: list[Segment]  # the extractive pick, in document order
    generated_text: str = ""  # mode="generative" only


@dataclass(frozen=True)
class Checkpoint:
    """What `Engine.checkpoint_all` made durable and what it could not."""

    durable_store: bool  # False: the engine has no state_dir, and nothing is durable
    streams: int  # streams in memory afterwards
    written: int  # records written by this checkpoint
    not_durable: int  # streams whose applied chunks are not all in their record (a write failed; all, without a store)
    dropped_chunks: int = 0  # accepted chunks not applied before the timeout: not durable, clients resend them
    dropped_streams: int = 0  # streams those chunks belong to
    rolled_back: int = 0  # of those, streams that held part of a chunk: back to their last record (not in `streams`)
    timeout_s: float | None = None  # the time it had to apply queued chunks (None: no limit)

    @classmethod
    def combine(cls, reports: list[Checkpoint]) -> Checkpoint:
        """Several engines' reports (a cluster's workers) as one: counts added up."""
        if not reports:
            return cls(durable_store=True, streams=0, written=0, not_durable=0)
        limits = [r.timeout_s for r in reports if r.timeout_s is not None]
        return cls(
            durable_store=all(r.durable_store for r in reports),
            **{f: sum(getattr(r, f) for r in reports) for f in (
                "streams", "written", "not_durable", "dropped_chunks", "dropped_streams", "rolled_back")},
            timeout_s=min(limits) if limits else None,
        )

    @property
    def everything_durable(self) -> bool:
        return self.durable_store and not self.not_durable and not self.dropped_chunks

    def describe(self, within: str | None = None) -> str:
        """One line for the log: what a restart finds, and what clients must resend. within: how the time limit
        is named (default "within {timeout_s} s")."""
        if not self.durable_store:
            out = (f"nothing is durable (no state_dir): the {self.streams} stream state(s) in memory are lost when "
                   "this process exits")
        elif not self.not_durable:
            out = (f"every stream's applied chunks are durable ({self.streams} stream(s), {self.written} record(s) "
                   "written)")
        else:
            out = (f"{self.streams - self.not_durable} of {self.streams} stream(s) durable up to their applied chunks; "
                   f"{self.not_durable} could not be written (see the errors above) and are durable only up to their "
                   "last record")
        if self.dropped_chunks:
            within = within or f"within {self.timeout_s:g} s"
            out += (f"; {self.dropped_chunks} accepted chunk(s) of {self.dropped_streams} stream(s) were not applied "
                    f"{within} and are not durable: clients resend them from the stream's durable_seq + 1")
        if self.rolled_back:
            out += (f"; {self.rolled_back} of these stream(s) held part of a chunk and went back to their last record "
                    "(durable_seq)" if self.durable_store else "")
        return out
