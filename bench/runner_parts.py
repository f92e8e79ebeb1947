"""Where `ModelRunner.run`'s time goes with the step thread alone, and with Python threads beside it (issue 14).

On the H200 the engine's step loop spent about 15 ms a step "launching" a step of 51 streams / 11.5 k tokens
(e2e.py, 2026-12-01, session 3) whose device work is a few ms. This times the runner on one step shape with
nothing else running, part by part (upload through the pinned staging buffer, the graphed forward, the
pooling, the copy back), and then the whole run again while --spinners threads run pure-Python loops (what
the tokenize stage and the callers' threads do to the GIL in the engine), at each switch interval of
--intervals: each torch call of the runner may then wait up to an interval per spinner, so the time with
spinners counts those calls (bench/RESULTS.md, session 12). Correctness is not its concern:
tests/test_step_runs.py checks what the runner computes.

    source bench/device_env.sh; python3 bench/runner_parts.py --out $OUT
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
from streamret.engine.segments import StepRuns  # noqa: E402
from streamret.engine.worker import ModelRunner  # noqa: E402
from streamret.model.spec import load_model  # noqa: E402


def step(model, n_streams: int, tokens_each: int, runs_each: int) -> tuple[np.ndarray, np.ndarray, StepRuns]:
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, model.config.vocab_size, n_streams * tokens_each, dtype=np.int64)
    lens = np.full(n_streams, tokens_each, dtype=np.int64)
    cuts = np.linspace(0, tokens_each, runs_each + 1).astype(np.int64)
    token_cu = np.concatenate([[0], (np.arange(n_streams)[:, None] * tokens_each + cuts[1:]).reshape(-1)])
    first = np.arange(n_streams, dtype=np.int64) * runs_each
    runs = StepRuns(token_cu, np.zeros(0, np.int64), np.zeros(0, np.int64), first, first + runs_each - 1,
                    np.diff(token_cu), np.zeros((n_streams, model.config.d_model), np.float64))
    return tokens, lens, runs


def timed(fn, reps: int) -> float:
    """Median ms of fn() over reps (each ends with a device synchronize)."""
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        out.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(out)


def device_time(fn, reps: int, out: str) -> dict:
    """The device's own time in one fn() (its kernels and copies, summed from the profiler's device events, gaps
    between them left out), the mean over reps; and the top kernels to runner_kernels.txt. What a step costs the
    GPU when the host keeps it busy, which a wall clock around one step cannot tell."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    by_name: dict[str, float] = {}
    for e in prof.events():
        if e.device_type == DeviceType.CUDA:  # kernels, copies and memsets on the device: no op rows counted twice
            by_name[e.name] = by_name.get(e.name, 0.0) + e.time_range.elapsed_us() / 1e3 / reps
    with open(os.path.join(out, "runner_kernels.txt"), "w") as f:
        for name, ms in sorted(by_name.items(), key=lambda x: -x[1]):
            f.write(f"{ms * 1e3:10.1f} us  {name[:110]}\n")
    return {"device_ms": sum(by_name.values()),
            "device_top": {k[:80]: round(v * 1e3, 1) for k, v in sorted(by_name.items(), key=lambda x: -x[1])[:12]}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default")
    p.add_argument("--streams", type=int, default=51)
    p.add_argument("--tokens", type=int, default=226, help="tokens per stream")
    p.add_argument("--runs", type=int, default=9, help="segment runs per stream")
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--spinners", type=int, default=3)
    p.add_argument("--intervals", type=float, nargs="+", default=[1e-4, 5e-4],
                   help="switch intervals (s) to time the runner at with the spinners running (the engine's step "
                        "sections use EngineConfig.step_switch_interval_s, 1e-4; Python's default 5e-3 takes seconds)")
    p.add_argument("--out", default=os.environ.get("OUT", "."))
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    model = load_model(args.model, "cuda", None).model
    runner = ModelRunner(model, 64, cuda_graphs=True)
    tokens, lens, runs = step(model, args.streams, args.tokens, args.runs)
    state = model.init_state(args.streams, device="cuda")
    res: dict = {"streams": args.streams, "tokens": int(len(tokens)), "runs": int(len(runs.counts))}

    def full():
        runner.run(tokens, lens, state, runs).wait()

    launch_ms: list[float] = []

    def full_split():
        t0 = time.perf_counter()
        out = runner.run(tokens, lens, state, runs)
        launch_ms.append((time.perf_counter() - t0) * 1e3)
        out.wait()

    for _ in range(5):
        full()
    res["run_and_wait_ms"] = timed(full, args.reps)
    res["run_and_wait_split_ms"] = timed(full_split, args.reps)
    res["launch_only_ms"] = statistics.median(launch_ms)
    cu = np.concatenate([[0], np.cumsum(lens)])
    arrays = [tokens, cu.astype(np.int32), runs.token_cu, runs.first, runs.last, runs.counts, runs.open_sums]
    slot = runner.staging.take()
    res["staging_slice_is_pinned"] = bool(slot.inputs[:16].is_pinned()) if slot.inputs.numel() else None
    slot.release()

    def upload():
        s = runner.staging.take()
        s.upload(arrays, runner.device)
        s.release()

    res["upload_ms"] = timed(upload, args.reps)
    s = runner.staging.take()
    dev = s.upload(arrays, runner.device)
    s.release()
    ids, cu_dev, token_cu, first, last, counts, open_sums = dev
    res["graphed_forward_ms"] = timed(lambda: runner.graphed(ids, cu_dev, state, clone_hidden=False), args.reps)
    hidden, new_state = runner.graphed(ids, cu_dev, state, clone_hidden=False)
    with torch.inference_mode():
        res["pool_ms"] = timed(lambda: runner._pool(hidden, new_state, token_cu, first, last, counts, open_sums),
                               args.reps)
    res.update(device_time(full, args.reps, args.out))
    stop = threading.Event()

    def spin():
        x = 0
        while not stop.is_set():
            for i in range(1000):
                x += i

    spinners = [threading.Thread(target=spin, daemon=True) for _ in range(args.spinners)]
    for t in spinners:
        t.start()
    res["spinners"] = args.spinners
    before = sys.getswitchinterval()
    for interval in args.intervals:  # each torch call may wait for the GIL: about an interval per spinner
        sys.setswitchinterval(interval)
        launch_ms.clear()
        key = f"switch_{interval * 1e3:g}ms"
        res[f"run_and_wait_with_spinners_{key}_ms"] = timed(full_split, args.reps)
        res[f"launch_only_with_spinners_{key}_ms"] = statistics.median(launch_ms)
    sys.setswitchinterval(before)
    stop.set()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "runner_parts.json"), "w") as f:
        json.dump(res, f, indent=1)
    print(f"\n== ModelRunner.run, {res['streams']} streams, {res['tokens']} tokens, {res['runs']} runs ==")
    for k, v in res.items():
        if k != "device_top":
            print(f"{k:48} {v:.3f}" if isinstance(v, float) else f"{k:48} {v}")
    print("device us a step, top kernels: " + ", ".join(f"{k} {v}" for k, v in res["device_top"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
