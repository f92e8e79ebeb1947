"""Issue 13, the K256 / V512 layout, in one GPU run: the one-pass chunk kernel (old), the two-pass
one (new, triton_two_pass.py) and a few of its tilings against fla, the two-pass kernel followed by
the separate output-gate kernel (gated_rms_norm) against the gate fused into its output kernel
(STREAMRET_CHUNK_GATE), then the fla-hub 1.3B layout forward with each, with rotary writing q and k
in place or contiguous (STREAMRET_QK_LAYOUT) and with the gate fused or separate, against fla's
RetNetModel.

    python3 bench/issue13.py [--out DIR] [--sections kernel,model] [--workers 8] [--only gate]

--only SUBSTR keeps the kernel variants and model paths whose name contains SUBSTR (fla always
runs): `--only gate` is the output gate's A/B alone (about 3 minutes).

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
from streamret_kernels.gated_norm.reference import gated_rms_norm_reference  # noqa: E402
from streamret_kernels.utils import poisoned_allocations  # noqa: E402

SECTIONS = ("kernel", "model")
H, K, V = 8, 256, 512
KERNEL_CASES = {"N64xL512": ("stream", 64, 512), "B1xT32768": ("long", 1, 32768)}
MODEL_SHAPES = [(64, 512), (1, 32768)]
TARGET = {"x_fla": 1.3, "of_floor": 0.40}  # issue 13, N64 x L512
MODEL_PATHS = {  # name: (STREAMRET_CHUNK_ALGO, STREAMRET_QK_LAYOUT, STREAMRET_CHUNK_GATE)
    "old": ("one_pass", "inplace", "separate"),
    "compact qk": ("one_pass", "compact", "separate"),
    "two-pass, gate separate": ("two_pass", "inplace", "separate"),
    "two-pass, gate fused": ("two_pass", "inplace", "fused"),
    "two-pass + compact qk": ("two_pass", "compact", "fused"),
}
MODEL_ENV = ("STREAMRET_CHUNK_ALGO", "STREAMRET_QK_LAYOUT", "STREAMRET_CHUNK_GATE")
GATE_EPS = 1e-6
GATE_SEPARATE, GATE_FUSED = "two-pass + gated norm kernel", "two-pass, gate fused"  # the A/B pair
SECTION_TIMEOUT_S = {"kernel": 240, "model": 300}
ONLY = ""  # --only: the variants and paths whose name contains it


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


def kernel_variants() -> dict[str, tuple[ChunkConfig | TwoPassConfig, str | None]]:
    """Old and new defaults (pick_config with STREAMRET_CHUNK_ALGO), a handful of two-pass tilings,
    and the two-pass kernel with the output gate (STREAMRET_CHUNK_GATE: separate kernel or fused;
    None: no gate), the ones whose name contains --only."""
    os.environ["STREAMRET_CHUNK_ALGO"] = "one_pass"
    old = pick_config(K, V, torch.bfloat16, 512.0)
    os.environ["STREAMRET_CHUNK_ALGO"] = "two_pass"
    new = pick_config(K, V, torch.bfloat16, 512.0)
    os.environ.pop("STREAMRET_CHUNK_ALGO")
    assert isinstance(old, ChunkConfig) and isinstance(new, TwoPassConfig), (old, new)
    variants = {
        "one-pass (old default)": (old, None),
        "two-pass (new default)": (new, None),
        "two-pass rows 64": (replace(new, BT=64), None),  # 8 warps on 64-row tiles: spills at sm90
        "two-pass out 2 stages": (replace(new, num_stages=2), None),  # the default before the H200 run
        "two-pass states every 256": (replace(new, state_every=256), None),
        "two-pass no bf16 split": (replace(new, split_bf16=False), None),
        "two-pass state tile 32x64": (replace(new, state_BK=32, state_stages=3), None),  # 2x state programs
        GATE_SEPARATE: (new, "separate"),
        GATE_FUSED: (new, "fused"),
        "two-pass, gate fused, epilogue 64 cols": (replace(new, gate_BV=64), "fused"),
        "two-pass, gate fused, epilogue 2 stages": (replace(new, gate_stages=2), "fused"),
    }
    return {name: v for name, v in variants.items() if ONLY in name}


def gate_inputs(c: dict, seed: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The output gate's g (like v) and weight (around 1, bf16 as in a bf16 model) for a case."""
    v = c["v"]
    g = torch.Generator(device=v.device).manual_seed(seed)
    return (torch.randn(v.shape, device=v.device, generator=g).to(v.dtype),
            (1.0 + 0.5 * torch.randn(v.shape[-1], device=v.device, generator=g)).to(v.dtype), GATE_EPS)


def run_variant(c: dict, cfg: ChunkConfig | TwoPassConfig, gate_mode: str | None, gate: tuple):
    """One kernel variant on case c: chunk retention, and with gate_mode the output gate after it."""
    os.environ["STREAMRET_CHUNK_GATE"] = gate_mode or "fused"
    return chunk_retention_triton(c["q"], c["k"], c["v"], c["lg"], cu_seqlens=c["cu"], initial_state=c["s0"],
                                  config=cfg, gate=gate if gate_mode else None)


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
    seed = int(time.time()) % 10000  # fresh data every run
    c = kb.make_case(kind, N, L, H, K, V, seed=seed)
    q, k, v, s0, cu, lg = c["q"], c["k"], c["v"], c["s0"], c["cu"], c["lg"]
    ro, rs = kb.chunk_retention_reference(q.double(), k.double(), v.double(), lg, cu_seqlens=cu,
                                          initial_state=s0.double())
    gate = gate_inputs(c, seed + 1)
    ro_gated = gated_rms_norm_reference(ro, gate[0].double(), gate[1].double(), GATE_EPS)  # float64 both
    outputs = {}  # gated outputs by variant, to compare fused and separate
    _, _, floor = kb.floor_ms(N * L, H, K, V, N, ceil)
    base = dict(case=case, layout=f"H{H}K{K}V{V}", floor_ms=floor, err_bf16_rounding=kb.rel_err(ro.to(q.dtype), ro))
    rows = []
    fla_ms = None
    if kb.fla_ops() is not None:
        fla = kb.fla_case(kind, N, L, H, K, V)  # its own data (same shape), checked against float64 inside
        fla_ms = fla["fla_ms"]
        rows.append(base | dict(variant="fla chunk_retention", ms=fla_ms, err_o=fla["fla_err_o"]))
        print(f"kernel {case:10s} {'fla chunk_retention':40s} {fla_ms:7.3f} ms  err o {fla['fla_err_o']:.2e}",
              flush=True)
    for name, (cfg, gate_mode) in kernel_variants().items():
        row = base | dict(variant=name, config=type(cfg).__name__ + str(asdict(cfg)), gate=gate_mode)
        rows.append(row)

        def run(cfg=cfg, gate_mode=gate_mode):
            return run_variant(c, cfg, gate_mode, gate)

        try:
            with poisoned_allocations():
                o, ht = run()
            row["err_o"], row["err_state"] = kb.rel_err(o, ro_gated if gate_mode else ro), kb.rel_err(ht, rs)
            if gate_mode:
                outputs[name] = o
            del o, ht
            row["ms"] = do_bench(run, warmup=25, rep=200, return_mode="median")
        except Exception as e:  # a tiling that does not compile (shared memory): recorded, the rest go on
            row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
            print(f"kernel {case:10s} {name:40s} FAILED {row['error']}", flush=True)
            continue
        row["of_floor"] = floor / row["ms"]
        if fla_ms:
            row["x_fla"] = fla_ms / row["ms"]
        # the gated output carries two more bf16 roundings (o before the norm, the output): 5e-3
        row["ok_err"] = row["err_o"] <= (5e-3 if gate_mode else 3e-3) and row["err_state"] <= 3e-3
        print(f"kernel {case:10s} {name:40s} {row['ms']:7.3f} ms  x fla {row.get('x_fla', float('nan')):.2f}  "
              f"of floor {row['of_floor']:.0%}  err o {row['err_o']:.2e} state {row['err_state']:.2e}"
              f"{'' if row['ok_err'] else '  ERROR ABOVE BOUND'}", flush=True)
    timed = {r["variant"]: r for r in rows if "ms" in r}
    if GATE_SEPARATE in timed and GATE_FUSED in timed:  # the fused gate against the separate kernel it replaces
        fused, separate = timed[GATE_FUSED], timed[GATE_SEPARATE]
        gate_row = base | dict(variant="gate fused vs separate", saved_ms=separate["ms"] - fused["ms"],
                               rel_diff=kb.rel_err(outputs[GATE_FUSED], outputs[GATE_SEPARATE]),
                               err_ratio=fused["err_o"] / separate["err_o"])
        rows.append(gate_row)
        print(f"kernel {case:10s} gate fused vs separate: saves {gate_row['saved_ms']:.3f} ms, outputs differ by "
              f"{gate_row['rel_diff']:.1e}, error fused / separate {gate_row['err_ratio']:.3f}", flush=True)
    os.environ.pop("STREAMRET_CHUNK_GATE", None)
    return rows


def model_paths() -> dict[str, tuple[str, str, str]]:
    return {name: env for name, env in MODEL_PATHS.items() if ONLY in name}


def set_path(name: str) -> None:
    os.environ.update(zip(MODEL_ENV, MODEL_PATHS[name]))


def section_model() -> list[dict]:
    """Correctness of the fused forward at the K256 V512 heads (2 layers, against float64) on the
    old path and the shipping one (two-pass, gate fused), then the 1.3B layout forward: ours on
    each path of MODEL_PATHS (chunk algorithm x q / k layout x output gate), and fla's RetNetModel."""
    mb = load_bench("model")
    from streamret.model.retnet import PRESETS, build_random

    rows = []
    paths = model_paths()
    for path in [p for p in ("old", "two-pass, gate fused") if p in paths]:
        set_path(path)
        save(rows := rows + [r | dict(kind="check", path=path) for r in mb.section_check(only="K256")])
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
        for name in paths:
            set_path(name)
            outs[name] = mb.ours_forward(ours, ids).float()
            row[f"{name}_ms"] = mb.median_ms(lambda i=ids: mb.ours_forward(ours, i), rep=1000)
        first = next(iter(outs.values()), None)
        row["max_rel_diff_between_paths"] = max((mb.rel_err(o, first) for o in outs.values()), default=0.0)
        del outs, first
        if fla is not None:
            def run_fla(i=ids):
                with torch.inference_mode():
                    return fla(input_ids=i, use_cache=False).last_hidden_state
            row["fla_ms"] = mb.median_ms(run_fla, rep=1000)
            for name in paths:
                row[f"{name}_x_fla"] = row["fla_ms"] / row[f"{name}_ms"]
        save(rows := [*rows, row])
        print(f"model 1.3B B{B:<3d} T{T:<6d} " + "  ".join(f"{n} {row[n + '_ms']:.2f} ms" for n in paths)
              + f"  fla {row.get('fla_ms', float('nan')):.2f} ms (outputs of the paths differ by at most "
              f"{row['max_rel_diff_between_paths']:.1e})", flush=True)
    for var in MODEL_ENV:
        os.environ.pop(var, None)
    return rows


def _warm(task: tuple) -> str:
    """One precompile task in a worker process: a variant of ours on its real case (the same
    specializations as the timed call), or fla on a tiny problem (bench/kernels.py's task)."""
    what, case, name, only = task
    global ONLY
    ONLY = only
    try:
        kb = load_bench("kernels")
        if what == "fla":
            return kb._precompile_task(("fla", H, K, V, name))
        kind, N, L = KERNEL_CASES[case]
        c = kb.make_case(kind, N, L, H, K, V)
        cfg, gate_mode = kernel_variants()[name]
        run_variant(c, cfg, gate_mode, gate_inputs(c, 0))
        torch.cuda.synchronize()
        return "ok"
    except Exception as e:
        return f"{task}: {type(e).__name__}: {str(e)[:200]}"


def precompile(workers: int) -> None:
    """Fills Triton's disk cache in parallel: one process compiles one kernel at a time, and the
    variants here are a dozen kernels of tens of seconds each at K256."""
    tasks = [("ours", case, name, ONLY) for case in KERNEL_CASES for name in kernel_variants()]
    if importlib.util.find_spec("fla") is not None:
        tasks += [("fla", None, arg, ONLY) for arg in ("varlen", "batch")]
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
            res = subprocess.run([sys.executable, __file__, "--child", name, "--json", path, "--only", ONLY],
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
        lines.append(f"chunk_retention H{H} K{K} V{V}      ms   x fla  of floor  err o     (targets at N64xL512: "
                     f">= {TARGET['x_fla']}x fla, >= {TARGET['of_floor']:.0%} of floor)")
        for r in kernel["rows"]:
            if "saved_ms" in r:
                lines.append(f"  {r['case']:10s} gate fused saves {r['saved_ms']:.3f} ms; outputs differ by "
                             f"{r['rel_diff']:.1e}; error fused / separate {r['err_ratio']:.3f}")
                continue
            if "ms" not in r:
                lines.append(f"  {r['case']:10s} {r['variant']:40s} FAILED")
                continue
            lines.append(f"  {r['case']:10s} {r['variant']:40s} {r['ms']:7.3f} {r.get('x_fla', float('nan')):6.2f} "
                         f"{r.get('of_floor', float('nan')):8.0%}  {r['err_o']:.1e}")
        lines.append(f"  (kernel section exit {kernel['exit']}, {kernel['seconds']:.0f} s)")
    model = report["sections"].get("model", {})
    if model:
        for r in model["rows"]:
            if r["kind"] == "check":
                lines.append(f"model check {r['path']:22s} {r['dtype']:9s} rel err {r['rel_err']:.1e} state "
                             f"{r['rel_err_state']:.1e} bound {r['bound']:.0e} {'ok' if r['ok'] else 'FAIL'}")
            else:
                nan = float("nan")
                lines.append(f"model 1.3B B{r['B']} x T{r['T']} (fla {r.get('fla_ms', nan):.2f} ms; "
                             "target >= 1.1x fla):")
                for name in [n for n in MODEL_PATHS if n + "_ms" in r]:
                    lines.append(f"  {name:34s} {r[name + '_ms']:8.2f} ms  x fla {r.get(name + '_x_fla', nan):.2f}")
        lines.append(f"  (model section exit {model['exit']}, {model['seconds']:.0f} s)")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--sections", default=",".join(SECTIONS))
    ap.add_argument("--workers", type=int, default=8, help="precompile processes (0: no precompile)")
    ap.add_argument("--only", default="", help="the kernel variants and model paths whose name contains this")
    ap.add_argument("--child", choices=SECTIONS, help=argparse.SUPPRESS)
    ap.add_argument("--json", help=argparse.SUPPRESS)
    args = ap.parse_args()
    global ONLY
    ONLY = args.only
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
