"""Issue 13, the K256 / V512 layout, in one GPU run: the two-pass chunk kernel (triton_two_pass.py)
on a long sequence cut into segments, with one state pass and the segments' incoming states added
by the output pass (TwoPassConfig.segment_fix "product") against two state passes ("off"),
beside fla; then the fla-hub 1.3B layout forward at B1 x T32768 each way (STREAMRET_SEGMENT_FIX)
against fla's RetNetModel. N64 x L512 (no cuts) shows the unchanged path. --tilings adds the
one-pass kernel and the two-pass tilings measured on 2026-12-01 (bench/RESULTS.md).

Two sweeps (not run by default) look for the fastest correct tilings at the 1.3B layout:
`tiles`, the two-pass chunk kernel's state-pass tiles, output-pass tiles, the segment fix's tiles
and the segment length, one knob at a time from TwoPassConfig's default, then the best state tile
with the best output tile, on N64 x L512 and B1 x T32768, each without an initial state (as the
model runs fresh streams) and with one; `elementwise`, rows (or columns) a program x warps of the
rotary, gated norm, SwiGLU, inv_rms and RMSNorm kernels at T = 32768, with GB/s (bytes read and
written over the time). Every variant is checked against the float64 reference before it is timed.

    python3 bench/issue13.py [--out DIR] [--sections kernel,model] [--workers 16] [--tilings]
    python3 bench/issue13.py --sections elementwise,tiles [--budget-s 470]
    TRITON_INTERPRET=1 python3 bench/issue13.py --smoke --sections elementwise,tiles  # CPU, tiny shapes

From the repo root on the GPU machine after `source bench/device_env.sh` (fla's wheels; fla is
optional: without it, ours only). Every kernel variant and fla's kernels are first compiled in
parallel worker processes (Triton's disk cache; --workers 0 skips it). Each section runs in a child
process (an illegal memory access poisons a CUDA context; here it costs one section). Correctness
first, on fresh random data at the real shapes: every variant against the float64 PyTorch
reference (all sequences). Timings are `triton.testing.do_bench` medians. Prints a short table
last; every figure goes to DIR/issue13.json (DIR: --out, else $OUT, else .). --budget-s (470)
bounds the whole run: the precompile stops early (what is left compiles when first run) and each
section's timeout shrinks to what is left, down to its reserve (SECTION_RESERVE_S).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace

import torch
import triton
from triton.testing import do_bench

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir))
from streamret_kernels.chunk_retention.triton_fwd import (  # noqa: E402
    ChunkConfig,
    TwoPassConfig,
    chunk_retention_triton,
    pick_config,
)
from streamret_kernels.gated_norm.reference import gated_rms_norm_reference  # noqa: E402
from streamret_kernels.gated_norm.triton_gated_norm import gated_rms_norm_triton  # noqa: E402
from streamret_kernels.rms_norm.reference import inv_rms_reference, rms_norm_reference  # noqa: E402
from streamret_kernels.rms_norm.triton_norm import inv_rms_triton, rms_norm_triton  # noqa: E402
from streamret_kernels.rotary.reference import rotary_reference  # noqa: E402
from streamret_kernels.rotary.triton_rotary import rotary_triton  # noqa: E402
from streamret_kernels.swiglu.reference import swiglu_reference  # noqa: E402
from streamret_kernels.swiglu.triton_swiglu import swiglu_triton  # noqa: E402
from streamret_kernels.utils import poisoned_allocations  # noqa: E402

SECTIONS = ("kernel", "model", "tiles", "elementwise")
H, K, V = 8, 256, 512
KERNEL_CASES = {"N64xL512": ("stream", 64, 512), "B1xT32768": ("long", 1, 32768)}
MODEL_SHAPES = [(1, 32768)]  # the shape whose chunk kernel cuts its sequence (B64 x T512 does not)
TARGET = {"x_fla": 1.3, "of_floor": 0.40}  # issue 13, N64 x L512
MODEL_PATHS = {  # name: STREAMRET_SEGMENT_FIX (the two-pass chunk kernel, rotary in place)
    "two state passes": "off",
    "one state pass + product": "product",
}
DEFAULT_SECTIONS = ("kernel", "model")  # the sweeps run when named
SECTION_TIMEOUT_S = {"kernel": 120, "model": 100, "tiles": 260, "elementwise": 100}
SECTION_RESERVE_S = {"kernel": 90, "model": 80, "tiles": 150, "elementwise": 60}  # --budget-s: the least each gets
TILINGS = os.environ.get("ISSUE13_TILINGS") == "1"  # --tilings (an environment variable: child processes see it)
SMOKE = os.environ.get("ISSUE13_SMOKE") == "1"  # --smoke, seen by child and worker processes the same way

# the tiles section: TwoPassConfig's default, then one knob at a time (the first entry of each list is the default)
TILE_LAYOUT = [H, K, V]
TILE_CASES = dict(KERNEL_CASES)
# initial_state None (the model's fresh streams), or one; ISSUE13_TILE_MODES=fresh (--tile-modes) times only the first
TILE_MODES = tuple(os.environ.get("ISSUE13_TILE_MODES", "fresh,h0").split(","))
STATE_TILES = [  # (state_BK, state_BV, state_warps, state_BT, state_stages): the wide tiling, where sequences fill
    # the GPU; the [BK, BV] float32 state is spread over warps * 32 threads (128 x 128 on 8 warps: 64 registers a
    # thread). Session 9's fresh winner was 128 x 128, 8 warps, BT 64, 2 stages; with an initial state 128 x 64, 8
    # warps, BT 128 was far faster (session 10) and is now the default
    (64, 64, 4, 64, 2), (128, 128, 8, 64, 2), (128, 128, 8, 128, 2), (128, 128, 16, 64, 2), (128, 128, 8, 32, 2),
    (128, 128, 4, 64, 2), (128, 64, 8, 64, 3),
]
STATE_FIELDS = ("state_BK", "state_BV", "state_warps", "state_BT", "state_stages")
OUT_TILES = [  # (BT, BV, num_warps, num_stages): the output pass where no sequence is cut (N64 x L512); the
    # 2026-12-02 sweep found none faster than the default (BV 32 at 3 / 4 stages, BT 64 slower; BV 64 at 4 stages
    # and BV 128 at 2 past shared memory): one kept as a same-run check
    (128, 32, 8, 4),
]
SPAN_TILES = [  # (state_every, BV, num_stages, span_stages): states every 256 tokens (half the span states' round
    # trip, 0.54 + 0.54 GB at N64 x L512 every 128), the output pass in key sub-blocks of BT = 128. sm90 compile
    # (triton 3.9): BV 64 at 3 stages needs 278,528 B of shared memory (past 232,448: not listed), 229,376 with the
    # second block of a span at 2 stages (span_stages), 212,992 at 2 stages; BV 32 at 3 stages 172,032
    # (H200, session 12, N64 x L512 with h0: 1.030 / 1.044 / 1.058 ms against the default's 0.924)
    (256, 64, 3, 2), (256, 64, 2, 0), (256, 32, 3, 0),
]
SPAN_FIELDS = ("state_every", "BV", "num_stages", "span_stages")
FIX_TILES = [  # (segment_fix_BV, segment_fix_stages, num_warps): the output pass on cut sequences; the 2026-12-02
    # sweep found none faster than the default (BV 32 / 3 stages: 2 and 4 stages, BV 16 and BV 64 at 1 stage slower)
    (32, 3, 8),
]
TILE_SEGMENTS = (8192,)  # forced segment lengths (2026-12-02: 1024 1.162 ms, 2048 1.098, 4096 1.095, 8192 1.086)
NARROW_TILES = [  # (narrow_state_BK, narrow_state_BV, narrow_state_warps, narrow_state_BT, narrow_state_stages): the
    # state tiling of a long sequence left uncut (B1 x T32768; 64 x 64 gives 256 programs). 2026-12-02 (session 9,
    # call 3): BT 128 / 3 stages 0.868 ms (now the default), BT 64 / 3 stages 0.923, 4 stages 0.929, 2 stages
    # 1.039; 128 x 64 / 8 warps / BT 128 1.026 was cut (its 128 programs fell under the planner's bar; the
    # narrow variants now run with segment_len 0); 64 x 128 and 128 x 64 on 4 warps past the section's budget
    (64, 64, 4, 64, 3), (64, 64, 4, 128, 2), (64, 64, 4, 128, 4), (64, 128, 4, 128, 3), (128, 64, 4, 128, 3),
    (64, 32, 4, 128, 3),
]
NARROW_FIELDS = ("narrow_state_BK", "narrow_state_BV", "narrow_state_warps", "narrow_state_BT", "narrow_state_stages")
CUT_SEGMENT = 4096  # the fix tilings' forced cut (the long case is not cut by default since 2026-12-02)

# the elementwise section: the fla-hub 1.3B layout's shapes at T = 32768 tokens, and calls a forward (24 layers)
ELEM_SHAPE = dict(T=32768, d=2048, H=8, K=256, V=512, F=2816)
ELEM_OPS = {  # op: (its tilings in ELEM_TILES, calls a forward)
    "rotary q+k": ("rotary", 24), "gated norm": ("gated norm", 24), "swiglu": ("swiglu", 24),
    "inv_rms": ("norm", 48), "rms_norm": ("norm", 1),  # inv_rms: both pre-norms of a layer; RMSNorm: the final norm
}
ELEM_TILES = {
    "rotary": [dict(rows_per_program=r, num_warps=w) for r in (8, 16, 32, 64) for w in (2, 4, 8)],
    "gated norm": [dict(rows_per_program=r, num_warps=w) for r in (2, 4, 8, 16) for w in (2, 4, 8)],
    "swiglu": [dict(block=b, num_warps=w) for b in (512, 1024, 2048, 4096) for w in (2, 4, 8)],
    "norm": [dict(rows_per_program=r, num_warps=w) for r in (1, 2, 4, 8) for w in (2, 4, 8, 16)],
}


def apply_smoke() -> None:
    """--smoke: the tiles and elementwise sections on the CPU (Triton's interpreter) at tiny shapes;
    checks the sweep's code paths, its timings mean nothing."""
    TILE_LAYOUT[:] = [2, 32, 64]
    TILE_CASES.clear()
    TILE_CASES.update({"N2xL256": ("stream", 2, 256), "B1xT1024": ("long", 1, 1024)})
    global TILE_SEGMENTS
    TILE_SEGMENTS = (256, 512)
    ELEM_SHAPE.update(T=64, d=64, H=2, K=32, V=64, F=96)


if SMOKE:
    apply_smoke()


ROWS_PATH = None  # a child's JSON of rows, written after every case: a child cut short keeps what it measured


def save(rows: list[dict]) -> list[dict]:
    if ROWS_PATH:
        with open(ROWS_PATH, "w") as f:
            json.dump(rows, f, indent=1, default=str)
    return rows


def load_bench(name: str):
    """bench/<name>.py as a module (its helpers: cases, floors, fla wrappers), without running it."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", os.path.join(HERE, f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def kernel_variants(case: str) -> dict[str, ChunkConfig | TwoPassConfig]:
    """The default (pick_config) and the segment variants: two state passes (the default before
    issue 13's segment fix), one pass with each fix, and each fix at BV 32 with 3 output stages
    (the tile a stage that fits 3 stages; sm90 compile: sum 176 KB, product 168 KB). The segment
    variants differ only where sequences are cut (B1 x T32768); at N64 x L512 two state passes run
    the same kernels as the default, as a same-run check. With --tilings, also the one-pass kernel
    and the tilings of the 2026-12-01 run."""
    new = pick_config(K, V, torch.bfloat16, 512.0)
    assert isinstance(new, TwoPassConfig), new
    variants = {
        f"two-pass, default ({new.segment_fix}, BV{new.segment_fix_BV} {new.segment_fix_stages} st.)": new,
        "two state passes (old)": replace(new, segment_fix="off"),
    }
    if KERNEL_CASES[case][0] == "long":  # at BV 64 the fix needs 2 stages (240 KB of shared memory on triton 3.6)
        variants["one pass + product, BV64 2 st."] = replace(new, segment_fix_BV=64, segment_fix_stages=2)
    if TILINGS:
        os.environ["STREAMRET_CHUNK_ALGO"] = "one_pass"
        variants["one-pass"] = pick_config(K, V, torch.bfloat16, 512.0)
        os.environ.pop("STREAMRET_CHUNK_ALGO")
        variants |= {
            "two-pass rows 64": replace(new, BT=64),  # 8 warps on 64-row tiles: spills at sm90
            "two-pass out 2 stages": replace(new, num_stages=2),
            # (the output pass now in key sub-blocks; at 3 stages a span's second block is past shared memory)
            "two-pass states every 256": replace(new, state_every=256, span_stages=2),
            "two-pass bf16 split flipped": replace(new, split_bf16=not new.split_bf16),
            "two-pass state tile 32x64": replace(new, state_BK=32, state_stages=3),  # 2x state programs
        }
    return variants


def section_kernel() -> list[dict]:
    kb = load_bench("kernels")
    ceil = kb.ceilings()
    print(f"ceilings: copy {ceil['copy_GBps']:.0f} GB/s, bf16 matmul {ceil['bf16_TFLOPs']:.0f} TFLOP/s", flush=True)
    rows = []
    for case, (kind, N, L) in KERNEL_CASES.items():
        save(rows := rows + kernel_case(kb, ceil, case, kind, N, L))
        torch.cuda.empty_cache()
    return rows


def kernel_case(kb, ceil: dict, case: str, kind: str, N: int, L: int) -> list[dict]:
    c = kb.make_case(kind, N, L, H, K, V, seed=int(time.time()) % 10000)  # fresh data every run
    q, k, v, s0, cu, lg = c["q"], c["k"], c["v"], c["s0"], c["cu"], c["lg"]
    ro, rs = kb.chunk_retention_reference(q.double(), k.double(), v.double(), lg, cu_seqlens=cu,
                                          initial_state=s0.double())
    _, _, floor = kb.floor_ms(N * L, H, K, V, N, ceil)
    base = dict(case=case, layout=f"H{H}K{K}V{V}", floor_ms=floor, err_bf16_rounding=kb.rel_err(ro.to(q.dtype), ro))
    rows = []
    fla_ms = None
    if kb.fla_ops() is not None:
        fla = kb.fla_case(kind, N, L, H, K, V)  # its own data (same shape), checked against float64 inside
        fla_ms = fla["fla_ms"]
        rows.append(base | dict(variant="fla chunk_retention", ms=fla_ms, err_o=fla["fla_err_o"]))
        print(f"kernel {case:10s} {'fla chunk_retention':32s} {fla_ms:7.3f} ms  err o {fla['fla_err_o']:.2e}",
              flush=True)
    for name, cfg in kernel_variants(case).items():
        row = base | dict(variant=name, config=type(cfg).__name__ + str(asdict(cfg)))
        rows.append(row)

        def run(cfg=cfg):
            return chunk_retention_triton(q, k, v, lg, cu_seqlens=cu, initial_state=s0, config=cfg)

        try:
            with poisoned_allocations():
                o, ht = run()
            row["err_o"], row["err_state"] = kb.rel_err(o, ro), kb.rel_err(ht, rs)
            del o, ht
            row["ms"] = do_bench(run, warmup=25, rep=200, return_mode="median")
        except Exception as e:  # a tiling that does not compile (shared memory): recorded, the rest go on
            row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
            print(f"kernel {case:10s} {name:32s} FAILED {row['error']}", flush=True)
            continue
        row["of_floor"] = floor / row["ms"]
        if fla_ms:
            row["x_fla"] = fla_ms / row["ms"]
        row["ok_err"] = row["err_o"] <= 3e-3 and row["err_state"] <= 3e-3
        print(f"kernel {case:10s} {name:32s} {row['ms']:7.3f} ms  x fla {row.get('x_fla', float('nan')):.2f}  "
              f"of floor {row['of_floor']:.0%}  err o {row['err_o']:.2e} state {row['err_state']:.2e}"
              f"{'' if row['ok_err'] else '  ERROR ABOVE 3e-3'}", flush=True)
    return rows


def section_model() -> list[dict]:
    """The 1.3B layout forward at B1 x T32768 (its chunk kernel cuts the sequence into segments):
    ours on each path of MODEL_PATHS, and fla's RetNetModel. The segment paths' correctness is the
    kernel section's (against float64); here their outputs are compared to two state passes'."""
    mb = load_bench("model")
    from streamret.model.retnet import PRESETS, build_random

    rows = []
    os.environ["STREAMRET_CHUNK_ALGO"] = "two_pass"
    cfg = PRESETS["fla-1.3b"]
    ours = build_random(cfg).cuda().to(torch.bfloat16)
    try:
        fla = mb.fla_model(cfg)
    except ImportError as e:
        fla = None
        print(f"fla not importable ({e}); ours only", flush=True)
    for B, T in MODEL_SHAPES:
        ids = mb.random_ids(B, T, cfg.vocab_size, seed=B)
        row = dict(kind="forward", model="fla-1.3b", B=B, T=T)
        outs = {}
        for name, fix in MODEL_PATHS.items():
            os.environ["STREAMRET_SEGMENT_FIX"] = fix
            outs[name] = mb.ours_forward(ours, ids).float()
            row[f"{name}_ms"] = mb.median_ms(lambda i=ids: mb.ours_forward(ours, i), rep=1000)
        old = outs["two state passes"]
        row["max_rel_diff_to_old"] = max(mb.rel_err(o, old) for o in outs.values())
        del outs
        if fla is not None:
            def run_fla(i=ids):
                with torch.inference_mode():
                    return fla(input_ids=i, use_cache=False).last_hidden_state
            row["fla_ms"] = mb.median_ms(run_fla, rep=1000)
            for name in MODEL_PATHS:
                row[f"{name}_x_fla"] = row["fla_ms"] / row[f"{name}_ms"]
        save(rows := [*rows, row])
        print(f"model 1.3B B{B:<3d} T{T:<6d} " + "  ".join(f"{n} {row[n + '_ms']:.2f} ms" for n in MODEL_PATHS)
              + f"  fla {row.get('fla_ms', float('nan')):.2f} ms (outputs differ from two state passes' by at "
              f"most {row['max_rel_diff_to_old']:.1e})", flush=True)
    os.environ.pop("STREAMRET_SEGMENT_FIX")
    os.environ.pop("STREAMRET_CHUNK_ALGO")
    return rows


def kernels_bench():
    """bench/kernels.py's helpers; under --smoke on the CPU interpreter, with float32 chunk inputs
    (the interpreter multiplies bf16 as integers in tl.dot: tests/test_kernels.py)."""
    kb = load_bench("kernels")
    if SMOKE:
        kb.smoke_mode()
        kb.DTYPE = torch.float32
    return kb


def tile_variants(case: str) -> dict[str, tuple[TwoPassConfig, int | None]]:
    """name: (config, segment_len) for the tiles section: TwoPassConfig's default (the model's tiling
    at K256 / V512 bf16), then one knob group at a time: where no sequence is cut by default (N64 x
    L512), each wide state tile of STATE_TILES, each output tile of OUT_TILES and each span tiling of
    SPAN_TILES (states every 256 tokens; under --smoke, L256: two row blocks a span); on a long sequence
    (uncut, narrow tiling), each narrow state tile of NARROW_TILES, and cut into CUT_SEGMENT-token
    segments, each output tile of FIX_TILES and the segment lengths of TILE_SEGMENTS."""
    base = TwoPassConfig()
    found = {(base, None): "default"}
    if TILE_CASES[case][0] == "long":
        for tiles in NARROW_TILES:  # segment_len 0: uncut even where a tiling leaves multiprocessors idle
            found.setdefault((replace(base, **dict(zip(NARROW_FIELDS, tiles, strict=True))), 0),
                             "narrow {}x{} {}w BT{} {}st".format(*tiles))
        for bv, st, w in FIX_TILES:
            found.setdefault((replace(base, segment_fix_BV=bv, segment_fix_stages=st, num_warps=w), CUT_SEGMENT),
                             f"fix BV{bv} {st}st {w}w")
        for seg in TILE_SEGMENTS:
            found.setdefault((base, seg), f"segment {seg}")
    else:
        for tiles in STATE_TILES:
            found.setdefault((replace(base, **dict(zip(STATE_FIELDS, tiles, strict=True))), None),
                             "state {}x{} {}w BT{} {}st".format(*tiles))
        for bt, bv, w, st in OUT_TILES:
            found.setdefault((replace(base, BT=bt, BV=bv, num_warps=w, num_stages=st), None),
                             f"out BT{bt} BV{bv} {w}w {st}st")
        for tiles in SPAN_TILES:
            every, bv, st, span_st = tiles
            found.setdefault((replace(base, **dict(zip(SPAN_FIELDS, tiles, strict=True))), None),
                             f"span{every} BV{bv} {st}st" + (f" (2nd block {span_st}st)" if span_st else ""))
    return {name: key for key, name in found.items()}


def combined(case: str, timed: dict[str, float]) -> tuple[str, TwoPassConfig] | None:
    """The fastest state tile with the fastest output tile (`timed`: variant name -> ms, correct
    ones only) where no sequence is cut: both kernels are the ones already compiled for those two
    variants. None when either winner is the default (nothing new to combine) and on long cases
    (their state and fix tilings run apart: uncut and cut)."""
    def best(prefix: str) -> str:
        return min((n for n in timed if n.startswith(prefix) or n == "default"), key=timed.get, default="default")

    if TILE_CASES[case][0] == "long":
        return None
    variants = tile_variants(case)
    state, out = best("state "), best("out ")
    if "default" in (state, out):
        return None
    cfg = replace(variants[out][0], **{f: getattr(variants[state][0], f) for f in STATE_FIELDS})
    return f"best: {state} + {out}", cfg


def tile_floor_ms(kb, ceil: dict, N: int, L: int, with_h0: bool) -> float:
    """bench/kernels.py's floor, less the initial state's read when there is none."""
    Hh, Kk, Vv = TILE_LAYOUT
    nbytes, flops, _ = kb.floor_ms(N * L, Hh, Kk, Vv, N, ceil)
    if not with_h0:
        nbytes -= 4 * N * Hh * Kk * Vv
    return max(nbytes / ceil["copy_GBps"] / 1e6, flops / ceil["bf16_TFLOPs"] / 1e9)


def fla_chunk_call(kb, c: dict, kind: str, N: int, L: int, s0: torch.Tensor | None):
    """fla's chunk_retention on case c (as bench/kernels.py's fla_case lays it out), or None without fla."""
    ops = None if SMOKE else kb.fla_ops()
    if ops is None:
        return None
    Hh, Kk, Vv = TILE_LAYOUT
    q, k, v = c["q"], c["k"], c["v"]
    if kind == "long":
        args, kw = (q.view(N, L, Hh, Kk), k.view(N, L, Hh, Kk), v.view(N, L, Hh, Vv)), {}
    else:
        args, kw = (q[None], k[None], v[None]), {"cu_seqlens": c["cu"].long()}
    return lambda: ops[0](*args, initial_state=s0, output_final_state=True, **kw)


def section_tiles() -> list[dict]:
    kb = kernels_bench()
    ceil = kb.ceilings()
    print(f"ceilings: copy {ceil['copy_GBps']:.0f} GB/s, bf16 matmul {ceil['bf16_TFLOPs']:.0f} TFLOP/s", flush=True)
    rows: list[dict] = []
    seed = int(time.time()) % 10000  # fresh data every run
    for mode in TILE_MODES:  # the model's mode (fresh) first: a section cut short loses the other
        for case, (kind, N, L) in TILE_CASES.items():
            tiles_case(kb, ceil, rows, kb.make_case(kind, N, L, *TILE_LAYOUT, seed=seed), case, mode)
            if not SMOKE:
                torch.cuda.empty_cache()
    return rows


def kernel_split_ms(fn, reps: int = 5) -> dict[str, float]:
    """Device time of each kernel of one call of fn (a profile of `reps` calls): the state pass,
    the scan and the output pass apart. Empty on the CPU or when the profiler fails."""
    if SMOKE:
        return {}
    try:
        from torch.profiler import ProfilerActivity, profile

        fn()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(reps):
                fn()
            torch.cuda.synchronize()
        split: dict[str, float] = {}
        for e in prof.events():
            if e.device_type == torch.autograd.DeviceType.CUDA:
                split[e.name] = split.get(e.name, 0.0) + e.time_range.elapsed_us() / reps / 1e3
        return dict(sorted(split.items(), key=lambda kv: -kv[1]))
    except Exception as e:  # a figure for the report, not a reason to lose the sweep
        return {"profiler failed": f"{type(e).__name__}: {str(e)[:200]}"}


def tiles_case(kb, ceil: dict, rows: list[dict], c: dict, case: str, mode: str) -> None:
    """Every variant of tile_variants(case), then the combined winners, on case c; rows appended
    and saved as they come."""
    kind, N, L = TILE_CASES[case]
    q, k, v, cu, lg = c["q"], c["k"], c["v"], c["cu"], c["lg"]
    s0 = c["s0"] if mode == "h0" else None
    ro, rs = kb.chunk_retention_reference(q.double(), k.double(), v.double(), lg, cu_seqlens=cu,
                                          initial_state=None if s0 is None else s0.double())
    floor = tile_floor_ms(kb, ceil, N, L, s0 is not None)
    base = dict(case=case, mode=mode, floor_ms=floor)
    tag = f"tiles {case:10s} {mode:5s}"
    fla_ms = None
    fla = fla_chunk_call(kb, c, kind, N, L, s0)
    if fla is not None:
        fo, fh = fla()
        row = base | dict(variant="fla chunk_retention", err_o=kb.rel_err(fo.reshape(ro.shape), ro),
                          err_state=kb.rel_err(fh, rs))
        del fo, fh
        fla_ms = row["ms"] = kb.median_ms(fla)
        rows.append(row)
        save(rows)
        print(f"{tag} {'fla chunk_retention':36s} {fla_ms:7.3f} ms  err o {row['err_o']:.2e}", flush=True)

    calls = {}

    def measure(name: str, cfg: TwoPassConfig, seg: int | None) -> None:
        row = base | dict(variant=name, config=asdict(cfg), segment_len=seg)
        rows.append(row)

        def run():
            return chunk_retention_triton(q, k, v, lg, cu_seqlens=cu, initial_state=s0, config=cfg, segment_len=seg)

        calls[name] = run

        try:
            with poisoned_allocations():
                o, ht = run()
            row["err_o"], row["err_state"] = kb.rel_err(o, ro), kb.rel_err(ht, rs)
            del o, ht
            row["ok_err"] = row["err_o"] <= 3e-3 and row["err_state"] <= 3e-3
            if row["ok_err"]:  # a wrong variant is not timed
                row["ms"] = kb.median_ms(run)
        except Exception as e:  # a tiling that does not compile or launch (shared memory): recorded, the rest go on
            row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
            print(f"{tag} {name:36s} FAILED {row['error']}", flush=True)
            save(rows)
            if "CUDA error" in str(e):  # the context is poisoned: every later variant would fail the same way
                raise SystemExit(f"tiles section stopped at {case} {mode} {name}: {row['error']}") from e
            return
        save(rows)
        if "ms" not in row:
            print(f"{tag} {name:36s} WRONG err o {row['err_o']:.2e} state {row['err_state']:.2e} (> 3e-3)", flush=True)
            return
        row["of_floor"] = floor / row["ms"]
        if fla_ms:
            row["x_fla"] = fla_ms / row["ms"]
        print(f"{tag} {name:36s} {row['ms']:7.3f} ms  x fla {row.get('x_fla', float('nan')):.2f}  of floor "
              f"{row['of_floor']:.0%}  err o {row['err_o']:.2e} state {row['err_state']:.2e}", flush=True)

    for name, (cfg, seg) in tile_variants(case).items():
        measure(name, cfg, seg)
    timed = {r["variant"]: r["ms"] for r in rows if r.get("case") == case and r.get("mode") == mode
             and r.get("ok_err") and "ms" in r}
    best = combined(case, timed)
    if best is not None:
        measure(*best, None)
    ours = {r["variant"]: r for r in rows
            if r.get("case") == case and r.get("mode") == mode and "ms" in r and r["variant"] in calls}
    if ours:  # where the time goes in the default and the fastest variant
        fastest = min(ours, key=lambda n: ours[n]["ms"])
        for name in dict.fromkeys(n for n in ("default", fastest) if n in ours):
            split = ours[name]["kernels_ms"] = kernel_split_ms(calls[name])
            print(f"{tag} {name:36s} kernels (ms): " + ", ".join(
                f"{kernel} {ms:.3f}" if isinstance(ms, float) else f"{kernel}: {ms}" for kernel, ms in split.items()),
                flush=True)
        save(rows)


class ElementwiseOp:
    """One kernel of the elementwise section on its 1.3B-layout inputs: `run(**tiling)` the timed
    call; `check(**tiling)` the relative error of `output(**tiling)` against the float64 reference
    (`reference()`, worked out on first use: precompile workers never need it); `floor` that
    reference's own rounding error to the output's dtype; `nbytes` read plus written a call."""

    def __init__(self, run, output, reference, out_dtype: torch.dtype, nbytes: int):
        self.run, self.output, self.reference, self.out_dtype = run, output, reference, out_dtype
        self.nbytes, self._ref = nbytes, None

    @property
    def ref(self) -> torch.Tensor:
        if self._ref is None:
            self._ref = self.reference()
        return self._ref

    @property
    def floor(self) -> float:
        return self.rel(self.ref.to(self.out_dtype))

    def rel(self, x: torch.Tensor) -> float:
        if not torch.isfinite(x).all():
            return float("inf")
        return ((x.double() - self.ref).norm() / self.ref.norm()).item()

    def check(self, **tiling) -> float:
        return self.rel(self.output(**tiling))


def elementwise_ops(device: str) -> dict[str, ElementwiseOp]:
    """The fused layer's calls (streamret/model/retnet.py): rotary in place on the q and k columns of
    the [T, 2HK + 2HV] projection output in one launch, with the token's 1/rms (r) for q and r^2 for
    k (squared_tail), the gated norm reading
    its gate from that buffer's last HV columns with r, SwiGLU on the halves of the [T, 2F] gate/up
    output with r, inv_rms and RMSNorm on the [T, d] residual stream."""
    T, d, H, K, V, F = (ELEM_SHAPE[n] for n in ("T", "d", "H", "K", "V", "F"))
    bf = torch.bfloat16
    gen = torch.Generator(device=device).manual_seed(int(time.time()) % 10000)

    def randn(*shape):
        return torch.randn(*shape, device=device, generator=gen).to(bf)

    qkvg = randn(T, 2 * H * K + 2 * H * V)
    angles = torch.rand(T, K // 2, device=device, generator=gen) * 6.283
    cos, sin = angles.cos(), angles.sin()
    r = torch.rand(T, device=device, generator=gen) + 0.5  # 1/rms of the tokens
    ones = torch.ones_like(r)  # the timed in-place rotary: a scale of 1 keeps the buffer's values bounded
    qk_before = qkvg[:, : 2 * H * K].clone()  # the rotary checks restore it (the kernel rotates in place)
    ops = {}
    qk = qkvg[:, : 2 * H * K].view(T, 2 * H, K)  # q then k heads: one launch, k's heads take r^2 (squared_tail)

    def rotary_output(**tiling):
        qkvg[:, : 2 * H * K].copy_(qk_before)
        return rotary_triton(qk, cos, sin, qk, r, H, **tiling)

    def rotary_ref():
        return rotary_reference(qk_before.view(T, 2 * H, K).double(), cos.double(), sin.double(), r.double(), H)

    ops["rotary q+k"] = ElementwiseOp(lambda **t: rotary_triton(qk, cos, sin, qk, ones, H, **t), rotary_output,
                                      rotary_ref, bf, 2 * T * 2 * H * K * 2 + 2 * T * (K // 2) * 4 + T * 4)
    o, w_v, eps = randn(T, H, V), randn(V), 1e-6
    g = qkvg[:, 2 * H * K + H * V:].view(T, H, V)  # the gate's columns: rotary never writes them

    def gated_norm(**t):
        return gated_rms_norm_triton(o, g, w_v, eps, r, **t)

    ops["gated norm"] = ElementwiseOp(
        gated_norm, gated_norm, lambda: gated_rms_norm_reference(o.double(), g.double(), w_v.double(), eps, r.double()),
        bf, 3 * T * H * V * 2 + T * 4)
    gate_up = randn(T, 2 * F)
    gate, up = gate_up[:, :F], gate_up[:, F:]

    def swiglu(**t):
        return swiglu_triton(gate, up, r, **t)

    ops["swiglu"] = ElementwiseOp(swiglu, swiglu, lambda: swiglu_reference(gate.double(), up.double(), r.double()),
                                  bf, 3 * T * F * 2 + T * 4)
    x, w_d = randn(T, d), randn(d)

    def factor(**t):
        return inv_rms_triton(x, eps, **t)

    def norm(**t):
        return rms_norm_triton(x, w_d, eps, **t)

    ops["inv_rms"] = ElementwiseOp(factor, factor, lambda: inv_rms_reference(x.double(), eps), torch.float32,
                                   T * d * 2 + T * 4)
    ops["rms_norm"] = ElementwiseOp(norm, norm, lambda: rms_norm_reference(x.double(), w_d.double(), eps), bf,
                                    2 * T * d * 2)
    return ops


def section_elementwise() -> list[dict]:
    """Each op's default tiling (the call without tile arguments, as the model makes it), then each
    tiling of its list (which holds the default's too: a same-run repeat). Correct means within 3x
    the reference's own rounding error, plus 1e-5 (a kernel that rounds to nearest once lands at
    about 1x; Triton's CPU interpreter, which truncates to bf16, at 2x)."""
    kb = kernels_bench()
    rows: list[dict] = []
    ops = elementwise_ops(kb.DEVICE)
    for name, op in ops.items():
        tiles, calls = ELEM_OPS[name]
        for tiling in [{}, *ELEM_TILES[tiles]]:
            row = dict(op=name, tiling=tiling or "default", calls_a_forward=calls)
            rows.append(row)
            try:
                row["err"], row["err_floor"] = op.check(**tiling), op.floor
                row["ok_err"] = row["err"] <= 3 * row["err_floor"] + 1e-5
                if row["ok_err"]:
                    row["ms"] = kb.median_ms(lambda op=op, t=tiling: op.run(**t))
                    row["GBps"] = op.nbytes / row["ms"] / 1e6
            except Exception as e:  # recorded, the rest go on
                row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
            save(rows)
            what = (f"FAILED {row['error']}" if "error" in row else f"WRONG err {row['err']:.2e}" if "ms" not in row
                    else f"{row['ms'] * 1e3:8.1f} us  {row['GBps']:6.0f} GB/s  err {row['err']:.2e}")
            print(f"elementwise {name:10s} {str(row['tiling']):44s} {what}", flush=True)
    return rows


_WARM_INPUTS: dict = {}


def warm_inputs(key: tuple, make):
    """The inputs of one case (or the elementwise ops), kept between a worker's tasks (one at a time)."""
    if key not in _WARM_INPUTS:
        _WARM_INPUTS.clear()
        _WARM_INPUTS[key] = make()
    return _WARM_INPUTS[key]


def _warm(task: tuple) -> str:
    """One precompile task in a worker process, with the timed call's specializations: a variant of
    ours on its real case ("ours" / "ours fresh": the kernel section; "tiles": the tiles section, in
    one of TILE_MODES), fla ("fla": on a tiny problem, bench/kernels.py's task; "tiles fla": on the
    tiles section's case), or one tiling of an elementwise op ("elementwise")."""
    what = task[0]
    try:
        kb = kernels_bench()
        if what == "fla":
            return kb._precompile_task(("fla", H, K, V, task[2]))
        if what == "elementwise":
            _, op, i = task
            ops = warm_inputs(("elementwise",), lambda: elementwise_ops(kb.DEVICE))
            ops[op].run(**ELEM_TILES[ELEM_OPS[op][0]][i])
        elif what in ("tiles", "tiles fla"):
            _, case, mode, name = task
            kind, N, L = TILE_CASES[case]
            c = warm_inputs((case,), lambda: kb.make_case(kind, N, L, *TILE_LAYOUT))
            s0 = c["s0"] if mode == "h0" else None
            if what == "tiles fla":
                fla_chunk_call(kb, c, kind, N, L, s0)()
            else:
                cfg, seg = tile_variants(case)[name]
                chunk_retention_triton(c["q"], c["k"], c["v"], c["lg"], cu_seqlens=c["cu"], initial_state=s0,
                                       config=cfg, segment_len=seg)
        else:
            _, case, name = task
            kind, N, L = KERNEL_CASES[case]
            c = kb.make_case(kind, N, L, H, K, V)
            # "ours fresh": no initial state, as in the model section (has_h0 = 0: its own specialization)
            chunk_retention_triton(c["q"], c["k"], c["v"], c["lg"], cu_seqlens=c["cu"],
                                   initial_state=None if what == "ours fresh" else c["s0"],
                                   config=kernel_variants(case)[name])
        kb.sync()
        return "ok"
    except Exception as e:
        return f"{task}: {type(e).__name__}: {str(e)[:200]}"


def precompile_tasks(sections: list[str]) -> list[tuple]:
    """The sections' kernels, longest compiles first: fla's autotuned kernels, each case's default
    (the kernels every other variant of that case shares), the output-pass variants (K256 output
    kernels: tens of seconds each), the state-pass variants, then the quick elementwise kernels."""
    has_fla = not SMOKE and importlib.util.find_spec("fla") is not None
    tasks = []
    if has_fla and "kernel" in sections:
        tasks += [("fla", None, arg) for arg in ("varlen", "batch")]
    if "tiles" in sections:
        runs = [(case, mode) for case in TILE_CASES for mode in TILE_MODES]
        if has_fla:
            tasks += [("tiles fla", case, mode, None) for case, mode in runs]
        names = {case: list(tile_variants(case)) for case in TILE_CASES}
        for first in (lambda n: n == "default", lambda n: n != "default" and not n.startswith("state "),
                      lambda n: n.startswith("state ")):
            tasks += [("tiles", case, mode, n) for case, mode in runs for n in names[case] if first(n)
                      # a cut sequence's state pass starts from zero either way: its h0 run compiles nothing new
                      and not (TILE_CASES[case][0] == "long" and mode == "h0" and n.startswith("state "))]
    if "kernel" in sections:
        tasks += [("ours", case, name) for case in KERNEL_CASES for name in kernel_variants(case)]
        tasks += [("ours fresh", "B1xT32768", name) for name, cfg in kernel_variants("B1xT32768").items()
                  if cfg.segment_fix_BV == TwoPassConfig.segment_fix_BV and cfg.segment_fix in MODEL_PATHS.values()]
    if "elementwise" in sections:
        tasks += [("elementwise", op, i) for op, (tiles, _) in ELEM_OPS.items() for i in range(len(ELEM_TILES[tiles]))]
    return tasks


def precompile(tasks: list[tuple], workers: int, deadline: float) -> None:
    """Fills Triton's disk cache in parallel: one process compiles one kernel at a time, and the
    K256 chunk kernels take tens of seconds each. Stops at `deadline` (perf_counter seconds): what
    is left compiles when a section first runs it."""
    t0 = time.perf_counter()
    failed, done = [], 0
    with mp.get_context("spawn").Pool(min(workers, len(tasks))) as pool:
        results = pool.imap_unordered(_warm, tasks)
        while done < len(tasks):
            try:
                r = results.next(timeout=max(1.0, deadline - time.perf_counter()))
            except mp.TimeoutError:
                failed.append(f"stopped at the precompile deadline: {len(tasks) - done} tasks left")
                break
            done += 1
            if r != "ok":
                failed.append(r)
    print(f"precompiled {done} of {len(tasks)} tasks in {time.perf_counter() - t0:.0f} s"
          + "".join(f"\n  {f}" for f in failed), flush=True)


def run_section(name: str, timeout: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "rows.json")
        t0 = time.perf_counter()
        try:
            res = subprocess.run([sys.executable, __file__, "--child", name, "--json", path], timeout=timeout)
            code = res.returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
        rows = json.load(open(path)) if os.path.exists(path) else []
    return dict(rows=rows, exit=code, seconds=time.perf_counter() - t0, timeout_s=timeout)


def summary(report: dict) -> str:
    lines = ["", f"== issue 13 summary ({report['meta']['gpu']}, triton {report['meta']['triton']}) =="]
    kernel = report["sections"].get("kernel", {})
    if kernel:
        lines.append(f"chunk_retention H{H} K{K} V{V}          ms   x fla  of floor  err o    state    "
                     f"(N64xL512 targets: >= {TARGET['x_fla']}x fla, >= {TARGET['of_floor']:.0%} of floor)")
        for r in kernel["rows"]:
            if "ms" not in r:
                lines.append(f"  {r['case']:10s} {r['variant']:32s} FAILED")
                continue
            nan = float("nan")
            lines.append(f"  {r['case']:10s} {r['variant']:32s} {r['ms']:7.3f} {r.get('x_fla', nan):6.2f} "
                         f"{r.get('of_floor', nan):8.0%}  {r['err_o']:.1e}  {r.get('err_state', nan):.1e}")
        lines.append(f"  (kernel section exit {kernel['exit']}, {kernel['seconds']:.0f} s)")
    model = report["sections"].get("model", {})
    if model:
        nan = float("nan")
        for r in model["rows"]:
            lines.append(f"model 1.3B B{r['B']} x T{r['T']} (fla {r.get('fla_ms', nan):.2f} ms; target >= 1.1x fla; "
                         f"outputs within {r['max_rel_diff_to_old']:.1e} of two state passes'):")
            for name in MODEL_PATHS:
                lines.append(f"  {name:26s} {r[name + '_ms']:8.2f} ms  x fla {r.get(name + '_x_fla', nan):.2f}")
        lines.append(f"  (model section exit {model['exit']}, {model['seconds']:.0f} s)")
    for name, lines_of in (("tiles", tiles_summary), ("elementwise", elementwise_summary)):
        sec = report["sections"].get(name)
        if sec:
            lines += lines_of(sec["rows"])
            lines.append(f"  ({name} section exit {sec['exit']}, {sec['seconds']:.0f} s of {sec['timeout_s']:.0f})")
    return "\n".join(lines)


def tiles_summary(rows: list[dict]) -> list[str]:
    """Per case and mode: fla, the default and the five fastest correct variants; the failed and wrong ones named."""
    Hh, Kk, Vv = TILE_LAYOUT
    lines = [f"tiles: two-pass chunk kernel H{Hh} K{Kk} V{Vv}, one knob at a time from TwoPassConfig()"
             f"{'ms':>14s}   x fla  of floor  vs default"]
    nan = float("nan")
    for case in TILE_CASES:
        for mode in TILE_MODES:
            run = [r for r in rows if r["case"] == case and r["mode"] == mode]
            if not run:
                continue
            default = next((r["ms"] for r in run if r["variant"] == "default" and "ms" in r), nan)
            ours = sorted((r for r in run if "ms" in r and r["variant"] != "fla chunk_retention"),
                          key=lambda r: r["ms"])
            shown = [r for r in run if r["variant"] == "fla chunk_retention"] + ours[:5]
            shown += [r for r in ours[5:] if r["variant"] == "default"]
            lines.append(f"  {case} {mode} (initial state {'given' if mode == 'h0' else 'None'}):")
            for r in shown:
                lines.append(f"    {r['variant']:54s} {r['ms']:7.3f} {r.get('x_fla', nan):6.2f} "
                             f"{r.get('of_floor', nan):8.0%}  {default / r['ms']:6.3f}x")
                split = {k: v for k, v in r.get("kernels_ms", {}).items() if isinstance(v, float) and v >= 0.005}
                if split:
                    lines.append("      kernels (ms): " + ", ".join(f"{k} {v:.3f}" for k, v in split.items()))
            failed = [r["variant"] for r in run if "error" in r]
            wrong = [r["variant"] for r in run if "error" not in r and "ms" not in r]
            if failed:
                lines.append(f"    failed (compile or launch): {', '.join(failed)}")
            if wrong:
                lines.append(f"    wrong (> 3e-3 from float64, not timed): {', '.join(wrong)}")
    return lines


def elementwise_summary(rows: list[dict]) -> list[str]:
    """Per op: the default tiling and the fastest correct one, and what the difference saves a forward."""
    T = ELEM_SHAPE["T"]
    lines = [f"elementwise at T={T}: {'op':10s} {'default us':>10s} {'GB/s':>6s}   {'fastest tiling':44s} "
             f"{'us':>7s} {'GB/s':>6s}  saved a forward"]
    for op, (_, calls) in ELEM_OPS.items():
        run = [r for r in rows if r["op"] == op]
        timed = [r for r in run if "ms" in r]
        default = next((r for r in timed if r["tiling"] == "default"), None)
        if default is None or not timed:
            lines.append(f"  {op:10s} no default timing ({len(run) - len(timed)} of {len(run)} failed or wrong)")
            continue
        best = min(timed, key=lambda r: r["ms"])
        bad = len(run) - len(timed)
        lines.append(f"  {op:10s} {default['ms'] * 1e3:10.1f} {default['GBps']:6.0f}   {str(best['tiling']):44s} "
                     f"{best['ms'] * 1e3:7.1f} {best['GBps']:6.0f}  {(default['ms'] - best['ms']) * calls:.2f} ms "
                     f"({calls} calls)" + (f"; {bad} failed or wrong" if bad else ""))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--sections", default=",".join(DEFAULT_SECTIONS), help=f"comma-separated, of {SECTIONS}")
    ap.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1),
                    help="precompile processes (0: no precompile)")
    ap.add_argument("--budget-s", type=float, default=470.0,
                    help="wall-clock budget of the whole run: precompile stops early and sections get less time")
    ap.add_argument("--tilings", action="store_true", help="also the one-pass kernel and the 2026-12-01 tilings")
    ap.add_argument("--tile-modes", default="", help="the tiles section's modes: fresh,h0 (default) or fresh")
    ap.add_argument("--smoke", action="store_true", help="tiles / elementwise on the CPU interpreter, tiny shapes")
    ap.add_argument("--child", choices=SECTIONS, help=argparse.SUPPRESS)
    ap.add_argument("--json", help=argparse.SUPPRESS)
    args = ap.parse_args()
    t_start = time.perf_counter()
    if args.tilings:
        global TILINGS
        TILINGS = True
        os.environ["ISSUE13_TILINGS"] = "1"
    if args.child:
        global ROWS_PATH
        ROWS_PATH = args.json
        save({"kernel": section_kernel, "model": section_model, "tiles": section_tiles,
              "elementwise": section_elementwise}[args.child]())
        return
    sections = [s for s in args.sections.split(",") if s]
    bad = set(sections) - set(SECTIONS)
    if bad:
        raise SystemExit(f"unknown sections {sorted(bad)}; pick from {SECTIONS}")
    if args.tile_modes:  # children and precompile workers read it on import
        modes = tuple(m for m in args.tile_modes.split(",") if m)
        if not modes or set(modes) - {"fresh", "h0"}:
            raise SystemExit(f"--tile-modes {args.tile_modes!r}: give fresh, h0 or fresh,h0")
        os.environ["ISSUE13_TILE_MODES"] = ",".join(modes)
        globals()["TILE_MODES"] = modes
    if args.smoke:
        if os.environ.get("TRITON_INTERPRET") != "1" or set(sections) - {"tiles", "elementwise"}:
            raise SystemExit("--smoke runs the tiles and elementwise sections on Triton's interpreter: "
                             "TRITON_INTERPRET=1 python3 bench/issue13.py --smoke --sections tiles,elementwise")
        os.environ["ISSUE13_SMOKE"] = "1"  # child and worker processes shrink their shapes on import
        if not SMOKE:
            globals()["SMOKE"] = True
            apply_smoke()
    deadline = t_start + args.budget_s

    def reserve(names: list[str]) -> float:  # what the sections still to run need at least
        return sum(SECTION_RESERVE_S[n] for n in names)

    tasks = precompile_tasks(sections) if args.workers else []
    if tasks:
        precompile(tasks, args.workers, deadline - reserve(sections))
    meta = dict(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), torch=torch.__version__,
                triton=triton.__version__, gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else "none",
                cmd=" ".join(sys.argv), budget_s=args.budget_s)
    try:
        import fla

        meta["fla"] = getattr(fla, "__version__", "?")
    except ImportError:
        meta["fla"] = None
    report = dict(meta=meta, sections={})
    os.makedirs(args.out, exist_ok=True)
    for i, name in enumerate(sections):  # the JSON after every section: a run cut short keeps what it measured
        left = deadline - time.perf_counter() - reserve(sections[i + 1:])
        report["sections"][name] = run_section(name, max(SECTION_RESERVE_S[name], min(SECTION_TIMEOUT_S[name], left)))
        with open(os.path.join(args.out, "issue13.json"), "w") as f:
            json.dump(report, f, indent=1, default=str)
    print(summary(report))


if __name__ == "__main__":
    main()
