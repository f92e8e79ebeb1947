"""Issue 13, the K256 / V512 layout, in one GPU run: the two-pass chunk kernel (triton_two_pass.py)
on a long sequence cut into segments, with one state pass and the segments' incoming states added
by the output pass (TwoPassConfig.segment_fix "product") against two state passes ("off"),
beside fla; then the fla-hub 1.3B layout forward at B1 x T32768 each way (STREAMRET_SEGMENT_FIX)
against fla's RetNetModel. N64 x L512 (no cuts) shows the unchanged path. --tilings adds the
one-pass kernel and the two-pass tilings measured on 2026-12-01 (bench/RESULTS.md).

    python3 bench/issue13.py [--out DIR] [--sections kernel,model] [--workers 8] [--tilings]

From the repo root on the GPU machine after `source bench/device_env.sh` (fla's wheels; fla is
optional: without it, ours only). Every kernel variant and fla's kernels are first compiled in
parallel worker processes (Triton's disk cache; --workers 0 skips it). Each section runs in a child
process (an illegal memory access poisons a CUDA context; here it costs one section). Correctness
first, on fresh random data at the real shapes: every variant against the float64 PyTorch
reference (all sequences). Timings are `triton.testing.do_bench` medians. Prints a short table
last; every figure goes to DIR/issue13.json (DIR: --out, else $OUT, else .).
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
from streamret_kernels.utils import poisoned_allocations  # noqa: E402

SECTIONS = ("kernel", "model")
H, K, V = 8, 256, 512
KERNEL_CASES = {"N64xL512": ("stream", 64, 512), "B1xT32768": ("long", 1, 32768)}
MODEL_SHAPES = [(1, 32768)]  # the shape whose chunk kernel cuts its sequence (B64 x T512 does not)
TARGET = {"x_fla": 1.3, "of_floor": 0.40}  # issue 13, N64 x L512
MODEL_PATHS = {  # name: STREAMRET_SEGMENT_FIX (the two-pass chunk kernel, rotary in place)
    "two state passes": "off",
    "one state pass + product": "product",
}
SECTION_TIMEOUT_S = {"kernel": 120, "model": 100}
TILINGS = os.environ.get("ISSUE13_TILINGS") == "1"  # --tilings (an environment variable: child processes see it)


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
            "two-pass states every 256": replace(new, state_every=256),
            "two-pass no bf16 split": replace(new, split_bf16=False),
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


def _warm(task: tuple) -> str:
    """One precompile task in a worker process: a variant of ours on its real case (the same
    specializations as the timed call), or fla on a tiny problem (bench/kernels.py's task)."""
    what, case, name = task
    try:
        kb = load_bench("kernels")
        if what == "fla":
            return kb._precompile_task(("fla", H, K, V, name))
        kind, N, L = KERNEL_CASES[case]
        c = kb.make_case(kind, N, L, H, K, V)
        # "ours fresh": no initial state, as in the model section (has_h0 = 0: its own specialization)
        chunk_retention_triton(c["q"], c["k"], c["v"], c["lg"], cu_seqlens=c["cu"],
                               initial_state=None if what == "ours fresh" else c["s0"],
                               config=kernel_variants(case)[name])
        torch.cuda.synchronize()
        return "ok"
    except Exception as e:
        return f"{task}: {type(e).__name__}: {str(e)[:200]}"


def precompile(workers: int) -> None:
    """Fills Triton's disk cache in parallel: one process compiles one kernel at a time, and the
    variants here are a dozen kernels of tens of seconds each at K256."""
    tasks = [("ours", case, name) for case in KERNEL_CASES for name in kernel_variants(case)]
    tasks += [("ours fresh", "B1xT32768", name) for name, cfg in kernel_variants("B1xT32768").items()
              if cfg.segment_fix_BV == TwoPassConfig.segment_fix_BV and cfg.segment_fix in MODEL_PATHS.values()]
    if importlib.util.find_spec("fla") is not None:
        tasks += [("fla", None, arg) for arg in ("varlen", "batch")]
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(min(workers, len(tasks))) as pool:
        failed = [r for r in pool.imap_unordered(_warm, tasks) if r != "ok"]
    print(f"precompiled {len(tasks)} tasks in {time.perf_counter() - t0:.0f} s"
          + "".join(f"\n  {f}" for f in failed), flush=True)


def run_section(name: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "rows.json")
        t0 = time.perf_counter()
        try:
            res = subprocess.run([sys.executable, __file__, "--child", name, "--json", path],
                                 timeout=SECTION_TIMEOUT_S[name])
            code = res.returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
        rows = json.load(open(path)) if os.path.exists(path) else []
    return dict(rows=rows, exit=code, seconds=time.perf_counter() - t0)


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
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--sections", default=",".join(SECTIONS))
    ap.add_argument("--workers", type=int, default=8, help="precompile processes (0: no precompile)")
    ap.add_argument("--tilings", action="store_true", help="also the one-pass kernel and the 2026-12-01 tilings")
    ap.add_argument("--child", choices=SECTIONS, help=argparse.SUPPRESS)
    ap.add_argument("--json", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.tilings:
        global TILINGS
        TILINGS = True
        os.environ["ISSUE13_TILINGS"] = "1"
    if args.child:
        global ROWS_PATH
        ROWS_PATH = args.json
        save({"kernel": section_kernel, "model": section_model}[args.child]())
        return
    sections = [s for s in args.sections.split(",") if s]
    bad = set(sections) - set(SECTIONS)
    if bad:
        raise SystemExit(f"unknown sections {sorted(bad)}; pick from {SECTIONS}")
    if args.workers and "kernel" in sections:
        precompile(args.workers)
    meta = dict(date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), torch=torch.__version__,
                triton=triton.__version__, gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else "none")
    try:
        import fla

        meta["fla"] = getattr(fla, "__version__", "?")
    except ImportError:
        meta["fla"] = None
    report = dict(meta=meta, sections={})
    os.makedirs(args.out, exist_ok=True)
    for name in sections:  # the JSON after every section: a run cut short keeps what it measured
        report["sections"][name] = run_section(name)
        with open(os.path.join(args.out, "issue13.json"), "w") as f:
            json.dump(report, f, indent=1, default=str)
    print(summary(report))


if __name__ == "__main__":
    main()
