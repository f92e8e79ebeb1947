"""Kernel benchmark: correctness first, then median timings of ours, fla and the PyTorch reference,
each against the floor set by this run's own copy bandwidth and bf16 matmul rate.

    python bench/kernels.py [--out DIR] [--layouts H8K128V256 ...] [--shapes N64xL512 ...] [--sweep]

Run on the GPU machine through bench/gpu_kernels.sh (it adds fla's wheels to the path). Prints a
short table last and writes every figure to DIR/kernels.json (DIR: --out, else $OUT, else .).
--sweep also times alternative tile configs and segment lengths (to tune the heuristic tables).
--precompile-only compiles every kernel variant the run needs in parallel worker processes (filling
Triton's cache) and exits: Triton's and fla's autotuners otherwise compile one config at a time.
Every GPU job (ours, each sweep variant, fla) runs in a child process, one layout at a time: an
illegal memory access poisons a process's CUDA context, and here it costs only the job that caused
it (seen at H8 K256 V512 with Triton 3.6 on the H200).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import time
from dataclasses import asdict, replace

import torch
import triton
from triton.testing import do_bench

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
from streamret_kernels import chunk_retention_reference, recurrent_retention_step_reference, retention_log_decays  # noqa: E402
from streamret_kernels.chunk_retention.triton_fwd import (  # noqa: E402
    OUTPUT_FORMS,
    ChunkConfig,
    TwoPassConfig,
    chunk_retention_triton,
    pick_config,
)
from streamret_kernels.recurrent_step.triton_step import (  # noqa: E402
    StepConfig,
    pick_step_config,
    recurrent_retention_step_triton,
)
from streamret_kernels.utils import interpreter_bf16_like_gpu, poisoned_allocations  # noqa: E402

LAYOUTS = {"H8K128V256": (8, 128, 256), "H16K64V128": (16, 64, 128), "H8K256V512": (8, 256, 512)}
SHAPES = {  # name: (kind, sequences, tokens per sequence)
    "N64xL512": ("stream", 64, 512),
    "N256xL128": ("stream", 256, 128),
    "N4096xL16": ("stream", 4096, 16),
    "N1024xL1": ("decode", 1024, 1),
    "N8192xL1": ("decode", 8192, 1),
    "B1xT131072": ("long", 1, 131072),
    "B4xT16384": ("long", 4, 16384),
}
TARGET = {"stream": 1.5, "long": 1.2, "decode": 0.9}  # x fla (chunk), fraction of copy bandwidth (decode)
CHECK_SEQS = 64  # correctness compares this many sequences (all of them for the long shapes)
CHECK_STREAMS = 256
DTYPE = torch.bfloat16
DEVICE = "cuda"
_BF16_PATCH = None  # --smoke: the interpreter patch, kept for the whole run


def smoke_mode() -> None:
    """--smoke: the whole script on the CPU (Triton's interpreter) at tiny shapes, host-clock timings:
    checks the script itself before it spends GPU time. Its timings mean nothing; its errors are the kernels' own,
    with the interpreter's bf16 made to behave as the GPU's (`interpreter_bf16_like_gpu`, for the whole run)."""
    global DEVICE, _BF16_PATCH
    DEVICE = "cpu"
    _BF16_PATCH = interpreter_bf16_like_gpu()  # (held: a dropped context manager's generator undoes the patch)
    _BF16_PATCH.__enter__()
    LAYOUTS.clear()
    LAYOUTS.update({"H2K16V32": (2, 16, 32)})
    SHAPES.update({k: (kind, max(1, n // 64), max(1, L // 256)) for k, (kind, n, L) in SHAPES.items()})


def median_ms(fn) -> float:
    if DEVICE == "cpu":  # --smoke
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3
    return do_bench(fn, warmup=25, rep=100, return_mode="median")


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    if not torch.isfinite(x).all():
        return float("inf")
    return ((x.double() - ref.double()).norm() / ref.double().norm()).item()


def fla_ops():
    try:
        from fla.ops.retention import chunk_retention, fused_recurrent_retention
    except ImportError:
        return None
    return chunk_retention, fused_recurrent_retention


def ceilings() -> dict:
    if DEVICE == "cpu":
        return {"copy_GBps": 1.0, "bf16_TFLOPs": 1.0}
    bufs = [torch.empty(2 * 1024**3, dtype=torch.uint8, device=DEVICE).random_() for _ in range(2)]
    copy_ms = median_ms(lambda: bufs[1].copy_(bufs[0]))
    bufs.clear()
    a = torch.randn(8192, 8192, device=DEVICE, dtype=torch.bfloat16)
    b = torch.randn_like(a)
    mm_ms = median_ms(lambda: a @ b)
    return {"copy_GBps": 2 * 2 * 1024**3 / copy_ms / 1e6, "bf16_TFLOPs": 2 * 8192**3 / mm_ms / 1e9}


def make_case(kind: str, N: int, L: int, H: int, K: int, V: int, seed: int = 0) -> dict:
    g = torch.Generator(device=DEVICE).manual_seed(seed)
    T = N * L

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, device=DEVICE, generator=g) * scale).to(DTYPE)

    return {
        "q": randn(T, H, K), "k": randn(T, H, K, scale=K**-0.5), "v": randn(T, H, V),
        "s0": torch.randn(N, H, K, V, device=DEVICE, generator=g) * 0.1,
        "cu": torch.arange(0, T + 1, L, device=DEVICE, dtype=torch.int32),
        "lg": retention_log_decays(H).to(DEVICE),
    }


def floor_ms(T: int, H: int, K: int, V: int, N: int, ceil: dict) -> tuple[float, float, float]:
    """Fewest bytes (q, k, v read, o written in bf16; states read and written in float32) and the
    chunkwise FLOPs at chunk 64 (as in ../shared/anchors/anchor_fla.py); floor = the larger time."""
    nbytes = 2 * T * H * (2 * K + 2 * V) + 2 * 4 * N * H * K * V
    flops = 2 * T * H * min(64, T // max(N, 1)) * (K + V) / 2 + 4 * T * H * K * V
    return nbytes, flops, max(nbytes / ceil["copy_GBps"] / 1e6, flops / ceil["bf16_TFLOPs"] / 1e9)


def sync() -> None:
    if DEVICE != "cpu":
        torch.cuda.synchronize()


def ref_ms(fn, limit_s: float = 1.0) -> float | None:
    """Median of 3 timed runs, or None when one run takes longer than limit_s (printed 'skipped')."""
    times = []
    for _ in range(3):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
        if times[-1] > limit_s * 1e3:
            return None
    return sorted(times)[1]


def checked(kind: str, N: int, cu: torch.Tensor) -> tuple[int, int]:
    """How many sequences, and tokens, the float64 reference checks: every one of the long shapes, the first
    CHECK_SEQS of the others."""
    n_chk = N if kind == "long" else min(N, CHECK_SEQS)
    return n_chk, int(cu[n_chk])


def reference(c: dict, kind: str, N: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The float64 reference's output and final states over the checked sequences of case c."""
    n_chk, t_chk = checked(kind, N, c["cu"])
    return chunk_retention_reference(
        c["q"][:t_chk].double(), c["k"][:t_chk].double(), c["v"][:t_chk].double(), c["lg"],
        cu_seqlens=c["cu"][: n_chk + 1], initial_state=c["s0"][:n_chk].double(),
    )


def run_chunk_case(kind, N, L, H, K, V, ceil) -> dict:
    c = make_case(kind, N, L, H, K, V)
    q, k, v, s0, cu, lg = c["q"], c["k"], c["v"], c["s0"], c["cu"], c["lg"]
    T = N * L
    row = {}
    # correctness: fresh data, poisoned outputs, float64 reference on the first sequences
    n_chk, t_chk = checked(kind, N, cu)
    s0_before = s0.clone()
    with poisoned_allocations():
        o, ht = chunk_retention_triton(q, k, v, lg, cu_seqlens=cu, initial_state=s0)
    ro, rs = reference(c, kind, N)
    row["err_o"] = rel_err(o[:t_chk], ro) if torch.isfinite(o).all() else float("inf")  # poison left anywhere: inf
    row["err_state"] = rel_err(ht[:n_chk], rs) if torch.isfinite(ht).all() else float("inf")
    row["err_floor_bf16_rounding"] = rel_err(ro.to(DTYPE), ro)
    del o, ht
    assert torch.equal(s0, s0_before), "initial_state modified"

    row["ours_ms"] = median_ms(lambda: chunk_retention_triton(q, k, v, lg, cu_seqlens=cu, initial_state=s0))
    del ro, rs
    row["ref_ms"] = ref_ms(lambda: chunk_retention_reference(q, k, v, lg, cu_seqlens=cu, initial_state=s0))
    row["bytes"], row["flops"], row["floor_ms"] = floor_ms(T, H, K, V, N, ceil)
    return row


KEYS_TILES = [  # sm90 compile (triton 3.9), no segment fix: registers, shared memory, none spilled
    (128, 64, 256, 8, 2, 512),  # 254, 192 KiB
    (128, 32, 256, 8, 3, 512),  # 254, 160 KiB
    (128, 64, 128, 8, 3, 512),  # 218, 208 KiB
    (128, 64, 128, 8, 2, 512),  # 210, 160 KiB
    (64, 64, 128, 4, 3, 512),  # 230, 176 KiB
    (128, 64, 256, 8, 2, 256),  # 254, 192 KiB
    (128, 32, 256, 8, 3, 256),  # 254, 160 KiB
    (128, 64, 128, 8, 3, 256),  # 218, 208 KiB
]


def chunk_variants(kind: str, N: int, L: int, H: int, K: int, V: int,
                   forms: tuple[str, ...] = OUTPUT_FORMS) -> list[tuple[ChunkConfig, int | None]]:
    """The planned config first, then the bf16 split flipped, pipeline depth, tiles and warps one at a
    time, 128-token chunks on 8 warps at the K <= 128 streaming shapes, the keys output form's tilings
    where the plan is the two-pass forward, and (long shapes) segment lengths. Two-pass variants whose
    output form is not in `forms` are left out."""
    base = pick_config(K, V, DTYPE, L)
    cfgs = [base, replace(base, split_bf16=not base.split_bf16), replace(base, num_stages=1),
            replace(base, num_stages=3)]
    cfgs += [replace(base, BV=base.BV // 2), replace(base, BV=2 * base.BV), replace(base, BV=2 * base.BV, num_warps=8)]
    if base.BT == 16:
        cfgs += [replace(base, BT=32)]
    if kind == "stream" and base.BT == 64 and K <= 128:  # a 128-token sequence in one chunk: no state step
        cfgs += [replace(base, BT=128, num_warps=8), replace(base, BT=128, num_warps=8, BV=base.BV // 2)]
    if K >= 256:  # the state slice crowds the registers: shorter chunks (less score recompute per V-block)
        cfgs += [replace(base, BT=bt, BV=bv, num_warps=w) for bt, bv, w in
                 [(32, 64, 8), (32, 64, 4), (64, 64, 8), (32, 128, 8), (32, 32, 4), (16, 64, 4), (16, 128, 8)]]
        cfgs += [replace(base, BT=32, BV=64, num_warps=8, split_bf16=not base.split_bf16),
                 replace(base, BV=64, num_warps=8, num_stages=1)]
    if isinstance(base, TwoPassConfig):  # the keys form: (BT, key_block, BV, warps, stages, state_every)
        cfgs += [replace(base, output_form="keys", BT=bt, key_block=kb, BV=bv, num_warps=w, num_stages=st,
                         state_every=se) for bt, kb, bv, w, st, se in KEYS_TILES]
    cfgs = [base, *(c for c in cfgs if not isinstance(c, TwoPassConfig) or c.output_form in forms)]
    out = [(cfg, None) for cfg in dict.fromkeys(cfgs) if 16 <= cfg.BV <= V]
    if kind == "long":
        out += [(base, seg) for seg in (1024, 4096, 8192)]
    return out


def sweep_variant(kind: str, N: int, L: int, H: int, K: int, V: int, idx: int,
                  forms: tuple[str, ...] = OUTPUT_FORMS) -> dict:
    """Times variant idx of chunk_variants (chunk shapes) or step_variants (decode), in place."""
    c = cached_case(kind, N, L, H, K, V)
    if kind == "decode":
        cfg = step_variants(K)[idx]
        ms = median_ms(lambda: recurrent_retention_step_triton(
            c["q"], c["k"], c["v"], c["s0"], c["lg"], inplace=True, config=cfg))
        return {"config": asdict(cfg), "ms": ms}
    cfg, seg = chunk_variants(kind, N, L, H, K, V, forms)[idx]

    def run():
        return chunk_retention_triton(c["q"], c["k"], c["v"], c["lg"], cu_seqlens=c["cu"], initial_state=c["s0"],
                                      config=cfg, segment_len=seg)

    if "ref_o" not in c:  # (once a case: the variants of a tiling trade error for time too, e.g. split_bf16)
        c["ref_o"] = reference(c, kind, N)[0]
    with poisoned_allocations():
        o, _ = run()
    err_o = rel_err(o[: c["ref_o"].shape[0]], c["ref_o"]) if torch.isfinite(o).all() else float("inf")
    del o
    return {"config": asdict(cfg), "segment_len": seg, "err_o": err_o, "ms": median_ms(run)}


_CASES: dict = {}


def cached_case(*key) -> dict:
    """make_case, kept between the jobs of one child process (the sweep times many variants on one case)."""
    if key not in _CASES:
        _CASES.clear()
        torch.cuda.empty_cache()
        _CASES[key] = make_case(*key)
    return _CASES[key]


def run_decode_case(N, H, K, V, ceil) -> dict:
    c = make_case("decode", N, 1, H, K, V)
    q, k, v, s0, lg = c["q"], c["k"], c["v"], c["s0"], c["lg"]
    row = {}
    n = min(N, CHECK_STREAMS)
    s0_before = s0[:n].clone()
    with poisoned_allocations():
        o, s1 = recurrent_retention_step_triton(q, k, v, s0, lg)
    ro, rs = recurrent_retention_step_reference(q[:n].double(), k[:n].double(), v[:n].double(), s0_before.double(), lg)
    row["err_o"] = rel_err(o[:n], ro) if torch.isfinite(o).all() else float("inf")
    row["err_state"] = rel_err(s1[:n], rs) if torch.isfinite(s1).all() else float("inf")
    row["err_floor_bf16_rounding"] = rel_err(ro.to(DTYPE), ro)
    assert torch.equal(s0[:n], s0_before), "state modified without inplace"
    del o, s1, ro, rs
    torch.cuda.empty_cache()
    nbytes = 2 * 4 * N * H * K * V + 2 * N * H * (2 * K + 2 * V)
    row["bytes"], row["flops"] = nbytes, 4 * N * H * K * V
    row["floor_ms"] = nbytes / ceil["copy_GBps"] / 1e6
    row["ours_ms"] = median_ms(lambda: recurrent_retention_step_triton(q, k, v, s0, lg))
    torch.cuda.empty_cache()
    row["ours_inplace_ms"] = median_ms(lambda: recurrent_retention_step_triton(q, k, v, s0, lg, inplace=True))
    if N <= 1024:  # the chunk kernel on one-token chunks, for comparison
        cu = torch.arange(0, N + 1, device=DEVICE, dtype=torch.int32)
        row["ours_chunk_L1_ms"] = median_ms(
            lambda: chunk_retention_triton(q, k, v, lg, cu_seqlens=cu, initial_state=s0)
        )
    if 2 * 4 * N * H * K * V < 24e9:
        row["ref_ms"] = ref_ms(lambda: recurrent_retention_step_reference(q, k, v, s0, lg))
    return row


def fla_case(kind: str, N: int, L: int, H: int, K: int, V: int) -> dict:
    """fla's time on the same data as ours (same seed): chunk_retention (varlen for the streaming
    shapes, [B, T] for the long ones, as in ../shared/anchors/anchor_fla.py), fused_recurrent for decode."""
    chunk, rec = fla_ops()
    c = make_case(kind, N, L, H, K, V)
    q, k, v, s0, cu, lg = c["q"], c["k"], c["v"], c["s0"], c["cu"], c["lg"]
    if kind == "decode":
        args = (q.view(N, 1, H, K), k.view(N, 1, H, K), v.view(N, 1, H, V))
        return {"fla_ms": median_ms(lambda: rec(*args, initial_state=s0, output_final_state=True))}
    if kind == "long":
        args, kw = (q.view(N, L, H, K), k.view(N, L, H, K), v.view(N, L, H, V)), {}
    else:
        args, kw = (q[None], k[None], v[None]), {"cu_seqlens": cu.long()}
    row = {}
    n_chk = N if kind == "long" else min(N, CHECK_SEQS)
    t_chk = int(cu[n_chk])
    fo, _ = chunk(*args, initial_state=s0, output_final_state=True, **kw)
    ro, _ = chunk_retention_reference(
        q[:t_chk].double(), k[:t_chk].double(), v[:t_chk].double(), lg, cu_seqlens=cu[: n_chk + 1],
        initial_state=s0[:n_chk].double(),
    )
    row["fla_err_o"] = rel_err(fo.reshape(-1, H, V)[:t_chk], ro)
    del fo, ro
    row["fla_ms"] = median_ms(lambda: chunk(*args, initial_state=s0, output_final_state=True, **kw))
    return row


def run_job(job: tuple) -> dict:
    what, *args = job
    if what == "ours":
        kind, N, L, H, K, V, ceil = args
        return run_decode_case(N, H, K, V, ceil) if kind == "decode" else run_chunk_case(kind, N, L, H, K, V, ceil)
    if what == "sweep":
        return sweep_variant(*args)
    return fla_case(*args)


def _job_child(jobs: list[tuple], path: str) -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    for job_id, job in jobs:
        try:
            row = run_job(job)
            torch.cuda.synchronize()  # a fault of this job surfaces here, not in the next one
        except Exception as e:
            row = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
        with open(path, "a") as f:
            f.write(json.dumps({"job": job_id, **row}) + "\n")
        if "error" in row and "CUDA" in row["error"]:
            os._exit(3)  # the CUDA context is poisoned: a fresh child takes the remaining jobs


def run_isolated(jobs: list[tuple], path: str) -> dict:
    """Runs (job_id, job) pairs in child processes, in order. A job that faults (an illegal memory
    access poisons the whole CUDA context) costs only itself: a fresh child takes the rest."""
    done: dict = {}
    ctx = mp.get_context("spawn")
    while len(done) < len(jobs):
        todo = [j for j in jobs if j[0] not in done]
        if os.path.exists(path):
            os.remove(path)
        child = ctx.Process(target=_job_child, args=(todo, path))
        child.start()
        child.join()
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    row = json.loads(line)
                    done[row.pop("job")] = row
        if child.exitcode not in (0, 3) and len(done) < len(jobs):
            lost = next(j[0] for j in jobs if j[0] not in done)
            done[lost] = {"error": f"the process died (exit code {child.exitcode}) in this job"}
    return done


def step_variants(K: int) -> list[StepConfig]:
    """Tiles of up to 128 state elements per thread."""
    return [StepConfig(bv, w) for bv in (16, 32, 64, 128) for w in (2, 4, 8) if K * bv <= 128 * 32 * w]


def _precompile_task(task: tuple) -> str:
    """Runs one kernel variant on a tiny problem with the real run's dtypes and tile constants."""
    what, H, K, V, arg = task
    try:
        if what == "fla":
            chunk, rec = fla_ops()
            q = torch.randn(1, 256, H, K, device=DEVICE, dtype=DTYPE)
            k, v = torch.randn_like(q), torch.randn(1, 256, H, V, device=DEVICE, dtype=DTYPE)
            if arg == "varlen":
                cu = torch.tensor([0, 100, 256], device=DEVICE)
                chunk(q, k, v, initial_state=torch.zeros(2, H, K, V, device=DEVICE), output_final_state=True,
                      cu_seqlens=cu)
            elif arg == "batch":
                chunk(q.view(2, 128, H, K), k.view(2, 128, H, K), v.view(2, 128, H, V),
                      initial_state=torch.zeros(2, H, K, V, device=DEVICE), output_final_state=True)
            else:
                rec(q.view(256, 1, H, K), k.view(256, 1, H, K), v.view(256, 1, H, V),
                    initial_state=torch.zeros(256, H, K, V, device=DEVICE), output_final_state=True)
        elif what == "step":
            c = make_case("decode", 4, 1, H, K, V)
            recurrent_retention_step_triton(c["q"], c["k"], c["v"], c["s0"], c["lg"], config=arg)
        else:
            cfg, seg, L = arg
            c = make_case("stream", 2, L, H, K, V)
            chunk_retention_triton(c["q"], c["k"], c["v"], c["lg"], cu_seqlens=c["cu"], initial_state=c["s0"],
                                   config=cfg, segment_len=seg)
        sync()
        return "ok"
    except Exception as e:
        return f"{task}: {str(e)[:150]}"


def precompile(layouts, shapes, sweep: bool, workers: int, forms: tuple[str, ...] = OUTPUT_FORMS) -> None:
    tasks, fla_tasks = [], []
    for H, K, V in layouts:
        if fla_ops() is not None:
            fla_tasks += [("fla", H, K, V, a) for a in ("varlen", "batch", "recurrent")]
        for name in shapes:
            kind, N, L = SHAPES[name]
            if kind == "decode":
                cfgs = [pick_step_config(K, V)]
                if sweep:
                    cfgs += step_variants(K)
                tasks += [("step", H, K, V, cfg) for cfg in cfgs]
                if N <= 1024:
                    tasks.append(("chunk", H, K, V, (pick_config(K, V, DTYPE, 1), 0, 16)))
                continue
            variants = chunk_variants(kind, N, L, H, K, V, forms) if sweep else [(pick_config(K, V, DTYPE, L), None)]
            # a forced cut compiles the three-launch path (long shapes), 0 the one-launch path
            tasks += [("chunk", H, K, V, (cfg, 32 if kind == "long" else 0, 64)) for cfg, _ in variants]
    tasks = list(dict.fromkeys(tasks))
    t0 = time.perf_counter()
    ctx = mp.get_context("spawn")
    # fla's tasks each in a fresh process: a fault in one must not poison the others' CUDA context
    with ctx.Pool(workers) as pool, ctx.Pool(min(workers, max(1, len(fla_tasks))), maxtasksperchild=1) as fla_pool:
        fla_res = fla_pool.map_async(_precompile_task, fla_tasks, chunksize=1)
        fails = [r for r in pool.imap_unordered(_precompile_task, tasks) if r != "ok"]
        fails += [r for r in fla_res.get() if r != "ok"]
    print(f"precompiled {len(tasks)} variants and {len(fla_tasks)} fla autotunes in {time.perf_counter() - t0:.0f} s;"
          f" {len(fails)} failed")
    for f in fails:
        print("  ", f)


def summary(rows: list[dict], ceil: dict) -> str:
    lines = [
        f"copy {ceil['copy_GBps']:.0f} GB/s, bf16 matmul {ceil['bf16_TFLOPs']:.0f} TFLOP/s",
        f"{'case':31s} {'ours ms':>8s} {'fla ms':>8s} {'ref ms':>8s} {'x fla':>6s} {'floor ms':>8s} "
        f"{'of floor':>8s} {'err o':>8s} {'err S':>8s} {'target':>12s}",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['case']:31s} ERROR {r['error'][:90]}")
            continue
        ours = min(r["ours_ms"], r.get("ours_inplace_ms", math.inf))
        x = r["fla_ms"] / ours if "fla_ms" in r else float("nan")
        frac = r["floor_ms"] / ours
        ref = f"{r['ref_ms']:8.2f}" if r.get("ref_ms") else f"{'skipped':>8s}"
        if r["kind"] == "decode":
            met = frac >= TARGET["decode"]
            target = f">={TARGET['decode']:.0%} bw {'ok' if met else 'MISS'}"
        else:
            met = x >= TARGET[r["kind"]]
            target = f">={TARGET[r['kind']]}x {'ok' if met else 'MISS'}"
        fla_s = f"{r['fla_ms']:8.3f}" if "fla_ms" in r else f"{'error' if 'fla_error' in r else '-':>8s}"
        lines.append(
            f"{r['case']:31s} {ours:8.3f} {fla_s} {ref} {x:6.2f} {r['floor_ms']:8.3f} {frac:8.1%} "
            f"{r['err_o']:8.1e} {r['err_state']:8.1e} {target:>12s}"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--layouts", nargs="*", default=list(LAYOUTS), choices=list(LAYOUTS))
    ap.add_argument("--shapes", nargs="*", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--sweep-forms", default="scores,keys",
                    help="the two-pass output forms the sweep tries beside the planned config (K >= 256)")
    ap.add_argument("--no-fla", action="store_true")
    ap.add_argument("--precompile-only", action="store_true")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--workers", type=int, default=min(12, os.cpu_count() or 1))
    args = ap.parse_args()
    forms = tuple(f for f in args.sweep_forms.split(",") if f)
    bad = set(forms) - set(OUTPUT_FORMS)
    if bad or not forms:
        sys.exit(f"--sweep-forms {args.sweep_forms!r}: {sorted(bad)} unknown; use {OUTPUT_FORMS}, comma-separated")
    if args.smoke:
        if os.environ.get("TRITON_INTERPRET") != "1":
            sys.exit("--smoke runs Triton's interpreter: TRITON_INTERPRET=1 python bench/kernels.py --smoke")
        smoke_mode()
        args.layouts, args.no_fla = list(LAYOUTS), True
    elif not torch.cuda.is_available():
        sys.exit("bench/kernels.py needs a CUDA GPU")
    torch.backends.cuda.matmul.allow_tf32 = False
    layouts = [LAYOUTS[n] for n in args.layouts]
    if args.precompile_only:
        precompile(layouts, args.shapes, args.sweep, args.workers, forms)
        return
    use_fla = not args.no_fla and fla_ops() is not None
    meta = {
        "date": time.strftime("%Y-%m-%d"), "device": "cpu" if DEVICE == "cpu" else torch.cuda.get_device_name(),
        "torch": torch.__version__, "triton": triton.__version__, "fla": None, "dtype": str(DTYPE),
        "cmd": " ".join(sys.argv),
    }
    if use_fla:
        import fla as fla_pkg

        meta["fla"] = getattr(fla_pkg, "__version__", "?")
    ceil = ceilings()
    print(json.dumps(meta), json.dumps(ceil), flush=True)
    rows = []
    os.makedirs(args.out, exist_ok=True)  # job children append to a file in it
    out_json = os.path.join(args.out, "kernels.json")
    for lname in args.layouts:
        H, K, V = LAYOUTS[lname]
        t0 = time.perf_counter()
        jobs, layout_rows = [], []
        for sname in args.shapes:
            kind, N, L = SHAPES[sname]
            case = f"{sname} {lname}"
            layout_rows.append({"case": case, "kind": kind, "N": N, "L": L, "H": H, "K": K, "V": V})
            jobs.append(((case, "ours"), ("ours", kind, N, L, H, K, V, ceil)))
            if args.sweep:
                n = len(step_variants(K)) if kind == "decode" else len(chunk_variants(kind, N, L, H, K, V, forms))
                jobs += [((case, "sweep", i), ("sweep", kind, N, L, H, K, V, i, forms)) for i in range(n)]
            if use_fla:
                jobs.append(((case, "fla"), ("fla", kind, N, L, H, K, V)))
        jobs = [(json.dumps(job_id), job) for job_id, job in jobs]
        if DEVICE == "cpu":  # --smoke: no children (they would look for a GPU)
            done = {job_id: run_job(job) for job_id, job in jobs}
        else:
            done = run_isolated(jobs, os.path.join(args.out, "jobs.jsonl"))
        for row in layout_rows:
            ours = done.get(json.dumps([row["case"], "ours"]), {})
            row.update({("error" if key == "error" else key): val for key, val in ours.items()})
            fla = done.get(json.dumps([row["case"], "fla"]), {})
            row.update({("fla_error" if key == "error" else key): val for key, val in fla.items()})
            sweep = [done[j] for j, _ in jobs if json.loads(j)[:2] == [row["case"], "sweep"] and j in done]
            if sweep:
                row["sweep"] = sweep
            print(json.dumps(row), flush=True)
        print(f"{lname}: {time.perf_counter() - t0:.0f} s", flush=True)
        rows += layout_rows
        with open(out_json, "w") as f:
            json.dump({"meta": meta, "ceilings": ceil, "rows": rows}, f, indent=1)
    print(summary(rows, ceil))


if __name__ == "__main__":
    main()
