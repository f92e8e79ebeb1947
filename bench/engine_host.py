"""Host work per engine step, on the CPU: where the step loop's own time goes (not the model's).

    python bench/engine_host.py --streams 256 --chunk 64 --rounds 12 --profile
    python bench/engine_host.py --streams 1024 --chunk 64 --rounds 20 --no-model --repeats 5

N streams each append one chunk of C tokens per round (byte tokenizer, ASCII text: one token per
byte; sentence segments), as bench/engine.py does. The step-loop thread runs under cProfile; the
printed table gives, per step, the time in each part of the loop: scheduling, gathering and
scattering states, packing the tokens and spans, the model call, booking segments and items, and
acks. The model's share is what the runner spends in the RetNet forward; everything else is host
work that a GPU step would have to hide. --no-model replaces the model call (see HostOnlyRunner) to
time the host work alone over many steps; --repeats keeps the run with the least host work (a
shared machine's other load only ever adds to it). --busy-threads N runs N pure-Python threads during
the timed rounds, as an engine process's tokenize and reader threads are busy under load: the step
thread then waits for the GIL after each torch call (streamret/engine/gil.py), which shows in the loop's
wall clocks; --step-switch-interval sets EngineConfig.step_switch_interval_s for an A/B ("none": off).

    python bench/engine_host.py --model default --streams 256 --chunk 2048 --man-text --no-model \
        --busy-threads 2 --step-switch-interval none
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import sys
import time
from concurrent.futures import wait

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
from bench.cpu_threads import busy_threads, thread_cpu_s, us_per_token_line  # noqa: E402
from bench.engine import text_chunks  # noqa: E402
from streamret.engine import Engine, EngineConfig  # noqa: E402
from streamret.engine.gil import switch_interval_arg  # noqa: E402
from streamret.engine.worker import StepOutput  # noqa: E402
from streamret.model.retnet import RetNetState  # noqa: E402
from streamret.model.spec import load_model  # noqa: E402

# (label, file suffix, function name): cumulative time of these functions in the step thread
PARTS = [
    ("schedule", "scheduler.py", "schedule"),
    ("spans (plan -> text pieces)", "scheduler.py", "spans"),
    ("gather states", "state_store.py", "gather"),
    ("pack tokens (StreamWork.tokens)", "scheduler.py", "tokens"),
    ("model call (runner.run)", "worker.py", "run"),
    ("  of which the RetNet forward", "module.py", "_call_impl"),
    ("scatter states", "state_store.py", "scatter"),
    ("book the step (_apply)", "core.py", "_apply"),
    ("  of which book_step", "segments.py", "book_step"),
    ("  of which keep_many", "segments.py", "keep_many"),
    ("send acks (resolve)", "acks.py", "resolve"),
]


class TimedEngine(Engine):
    """The engine with the CPU time of its step-loop thread counted: all of it, and inside the model call.

    CPU time of the thread (time.thread_time), not wall time: the figures hold on a machine shared with
    other busy processes, where wall time would count their turns too. With profile=True the thread
    also runs under cProfile, timed the same way."""

    def __init__(self, *args, profile: bool = False, fake_model: bool = False, **kwargs):
        self.profile = cProfile.Profile(time.thread_time) if profile else None
        self.loop_cpu_s = 0.0
        self.model_cpu_s = 0.0
        super().__init__(*args, **kwargs)
        run = HostOnlyRunner(self.model) if fake_model else self.runner.run

        def timed_run(*a, **kw):
            t0 = time.thread_time()
            try:
                return run(*a, **kw)
            finally:
                self.model_cpu_s += time.thread_time() - t0

        self.runner.run = timed_run
        self.part_cpu_s = {"_next_step": 0.0, "_apply": 0.0}  # planning (schedule, gather), booking
        for name in self.part_cpu_s:
            setattr(self, name, self._cpu_timed(name, getattr(self, name)))

    def _cpu_timed(self, name, fn):
        def timed(*a, **kw):
            t0 = time.thread_time()
            try:
                return fn(*a, **kw)
            finally:
                self.part_cpu_s[name] += time.thread_time() - t0
        return timed

    def _loop(self) -> None:
        t0 = time.thread_time()
        if self.profile is not None:
            self.profile.enable()
        try:
            super()._loop()
        finally:
            if self.profile is not None:
                self.profile.disable()
            self.loop_cpu_s = time.thread_time() - t0


class HostOnlyRunner:
    """Stands in for the model runner with --no-model: returns the gathered states unchanged, random
    segment-run embeddings and open sums, and the states' embeddings (also as each run's stream embedding after
    it), so that a step costs only its host work (and runs 50x faster, which lets many steps be timed)."""

    def __init__(self, model):
        self.model = model
        self.rng = np.random.default_rng(0)

    def __call__(self, tokens, lens, state: RetNetState, runs) -> StepOutput:
        with torch.inference_mode():
            emb = self.model.stream_embedding(state).numpy()
        run_emb = self.rng.standard_normal((len(runs.counts), emb.shape[1])).astype(np.float32)
        run_emb /= np.linalg.norm(run_emb, axis=1, keepdims=True)
        open_sums = self.rng.standard_normal((len(lens), self.model.config.d_model))
        owner = np.repeat(np.arange(len(lens)), runs.last - runs.first + 1)
        return StepOutput(state, run_emb, emb[owner], emb, open_sums)


def sleep_for_the_model(engine, ms: float = 1.0, us_per_token: float = 0.1) -> None:
    """Replace an in-process engine's model call with HostOnlyRunner behind a sleep of `ms` plus `us_per_token` a
    token (a GPU step's device time as the step thread waits for it, the GIL let go): the real engine's host work
    on the CPU at a model's pace (bench/results: step_host_parts.py, short_docs_host.py)."""
    fake = HostOnlyRunner(engine.model)

    def run(tokens, lens, state, runs):
        time.sleep((ms + us_per_token * len(tokens) / 1e3) * 1e-3)
        return fake(tokens, lens, state, runs)

    engine.runner.run = run


def man_chunks(n: int, size: int) -> list[bytes]:
    """n chunks of `size` bytes of real English text (the manual pages bench/e2e.py reads): many more
    sentences, and so segments, per chunk than text_chunks' lowercase words."""
    from bench.e2e import find_text

    data = find_text([], n * size, size)[0].encode()
    return [data[i * size : (i + 1) * size] for i in range(len(data) // size)][:n]


def measure(loaded, args) -> dict:
    n, c = args.streams, args.chunk
    cfg = EngineConfig(
        max_step_tokens=args.step_tokens, max_chunk_bytes=max(c, 1 << 20), max_pending_chunks_per_stream=4,
        max_pending_chunks=4 * n + 16, max_pending_bytes=4 * n * c + (1 << 20),
        device_state_bytes=(n + 1) * loaded.model.config.state_bytes_per_stream(), durable_every_chunks=0,
        step_switch_interval_s=args.step_switch_interval, tokenize_procs=args.tokenize_procs,
        step_whole_chunk_tokens=getattr(args, "step_whole_chunk_tokens", None),
    )
    chunks = man_chunks(min(n, 64), c) if args.man_text else text_chunks(min(n, 64), c, seed=c)
    ids = [f"bench/{i}" for i in range(n)]
    with TimedEngine(loaded, None, cfg, profile=args.profile, fake_model=args.no_model) as eng:
        def one_round(seq: int) -> None:
            with eng._lock:  # the whole round is queued before a step is planned: the same steps every run
                futures = [eng.submit_append(sid, seq, chunks[(i + seq) % len(chunks)]) for i, sid in enumerate(ids)]
            for f in wait(futures)[0]:
                f.result()

        one_round(1)
        with busy_threads(args.busy_threads) as (busy_cpu_s, _):
            before = eng.stats()
            cpu0, busy0 = thread_cpu_s(), busy_cpu_s()
            t0 = time.perf_counter()
            for r in range(args.rounds):
                one_round(2 + r)
            dt = time.perf_counter() - t0
            cpu1, busy1 = thread_cpu_s(), busy_cpu_s()
            after = eng.stats()
    cpu = {k: v - cpu0.get(k, 0.0) for k, v in cpu1.items()}
    if cpu and args.busy_threads:  # the stand-ins' CPU apart: they are not the engine's work
        cpu["python"] = max(0.0, cpu.get("python", 0.0) - (busy1 - busy0))  # (both in 10 ms ticks)
    return dict(eng=eng, before=before, after=after, seconds=dt, cpu=cpu)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="random:tiny")
    p.add_argument("--streams", default=256, type=int)
    p.add_argument("--chunk", default=64, type=int, help="tokens (bytes) per chunk")
    p.add_argument("--rounds", default=12, type=int)
    p.add_argument("--step-tokens", default=16384, type=int)
    p.add_argument("--threads", default=1, type=int, help="torch CPU threads")
    p.add_argument("--repeats", default=1, type=int, help="runs; the one with the least host work counts")
    p.add_argument("--man-text", action="store_true", help="chunks of manual pages (bench/e2e.py's text)")
    p.add_argument("--no-model", action="store_true", help="host work alone: the model call is replaced")
    p.add_argument("--profile", action="store_true", help="run the step thread under cProfile: a table of parts")
    p.add_argument("--top", default=0, type=int, help="with --profile, also the top functions by own time")
    p.add_argument("--tokenize-procs", action=argparse.BooleanOptionalAction, default=None,
                   help="EngineConfig.tokenize_procs: cut and tokenize in tokenizer processes (default: on a GPU only)")
    p.add_argument("--step-whole-chunk-tokens", type=int, default=None,
                   help="EngineConfig.step_whole_chunk_tokens: a stream's first chunk up to this many tokens whole")
    p.add_argument("--busy-threads", default=0, type=int, help="pure-Python threads running during the timed rounds")
    p.add_argument("--step-switch-interval", type=switch_interval_arg("--step-switch-interval"),
                   default=EngineConfig.step_switch_interval_s,
                   help="EngineConfig.step_switch_interval_s in seconds, or none")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_model(args.model, "cpu")
    runs = [measure(loaded, args) for _ in range(args.repeats)]
    host = [(r["eng"].loop_cpu_s - r["eng"].model_cpu_s) / r["after"]["steps"] for r in runs]
    best = runs[int(np.argmin(host))]
    eng, before, after = best["eng"], best["before"], best["after"]
    n, c = args.streams, args.chunk
    steps = after["steps"] - before["steps"]
    tokens = after["tokens_processed"] - before["tokens_processed"]
    all_steps = after["steps"]
    model = "no model (--no-model)" if args.no_model else args.model
    print(f"{platform.processor() or 'cpu'}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}; "
          f"{args.busy_threads} busy threads, step switch interval {args.step_switch_interval}; "
          f"{model}, {n} streams x {c}-token chunks, {args.rounds} rounds: {tokens:,} tokens in {steps} steps "
          f"({tokens / max(1, steps):.0f} tokens and {np.mean(after['recent_step_batch_sizes'][-steps:]):.0f} "
          "streams per step), "
          f"{tokens / best['seconds']:,.0f} tok/s")
    print(f"step-loop thread CPU per step, all {all_steps} steps, best of {args.repeats}: "
          f"{1e3 * eng.loop_cpu_s / all_steps:.2f} ms, of which {1e3 * eng.model_cpu_s / all_steps:.2f} ms in the "
          f"model call and {1e3 * (eng.loop_cpu_s - eng.model_cpu_s) / all_steps:.2f} ms host work"
          + (" (cProfile overhead included)" if args.profile else "")
          + f"; all runs: {', '.join(f'{1e3 * h:.2f}' for h in host)} ms")
    print(f"step-thread CPU per step, all {all_steps} steps: planning (_next_step: schedule, step runs, gather) "
          f"{1e3 * eng.part_cpu_s['_next_step'] / all_steps:.2f} ms, booking (_apply: spans, segments, items) "
          f"{1e3 * eng.part_cpu_s['_apply'] / all_steps:.2f} ms")
    if best["cpu"]:
        print(us_per_token_line(best["cpu"], tokens))
    parts = {k: after["loop_parts_seconds"][k] - before["loop_parts_seconds"][k] for k in after["loop_parts_seconds"]}
    print(f"the loop's own clocks (stats()['loop_parts_seconds'], wall ms per step over the {steps} timed steps): "
          + ", ".join(f"{k} {1e3 * v / max(1, steps):.3f}" for k, v in parts.items()))
    cpu = {k: after["loop_parts_cpu_seconds"][k] - before["loop_parts_cpu_seconds"][k] for k in parts}
    booked = sum(v for k, v in cpu.items() if k not in ("idle", "gather", "launch", "wait", "scatter"))
    print("the step thread's CPU by part, us a token (stats()['loop_parts_cpu_seconds']): "
          + ", ".join(f"{k} {1e6 * v / max(1, tokens):.3f}" for k, v in cpu.items())
          + f"; besides gather, launch and scatter (host copies and the model here) "
            f"{1e6 * booked / max(1, tokens):.3f}")
    if not args.profile:
        return
    stats = pstats.Stats(eng.profile)
    print(f"cProfile of the step thread (thread CPU time), all {all_steps} steps (warm-up included), ms per step "
          "(profiler overhead included):")
    cum: dict[str, float] = {}
    for (file, _, name), (_, _, _, ct, _) in stats.stats.items():  # type: ignore[attr-defined]
        for label, suffix, fn in PARTS:
            if name == fn and file.endswith(suffix):
                cum[label] = cum.get(label, 0.0) + ct
    total = sum(ct for (_, _, name), (_, _, _, ct, _) in stats.stats.items()  # type: ignore[attr-defined]
                if name in ("_next_step", "_launch", "_finish"))
    for label, _, _ in PARTS:
        print(f"  {label:40s} {1e3 * cum.get(label, 0.0) / all_steps:8.2f}")
    print(f"  {'step loop total (next, launch, finish)':40s} {1e3 * total / all_steps:8.2f}")
    if args.top:
        ours = "streamret/engine|numpy|dataclass|threading|concurrent|<string>"
        stats.sort_stats("tottime").print_stats(ours, args.top)


if __name__ == "__main__":
    main()
