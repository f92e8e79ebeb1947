"""Model forward benchmark: ours against fla's RetNetModel and a MiniLM-shaped BERT, in one run.

    python bench/model.py [--out DIR] [--sections check,model,default,graph,profile,kernels,parity]

Run on the GPU machine with fla's wheels on the path (`source bench/device_env.sh`). Every section
prints as it goes; a short table comes last and every figure goes to DIR/model.json (DIR: --out,
else $OUT, else .). Sections:

  check    the fused inference path against the same model in float64 on the CPU-free reference
           layers (fresh random weights and ids, poisoned allocations), bf16 and float32; means of
           three draws
  model    forward time of ours (fused, and the plain layers for comparison) and of fla's
           RetNetModel at the same layout: `small` and fla-hub 1.3B, B64 x T512 and B1 x T32768,
           as medians of --rounds alternating rounds (ours, fla, ...); --ab VAR=a,b adds an A/B
  default  the bundled default model's packed forward (tokens/s) against an all-MiniLM-L6-v2-
           shaped BERT (random weights, fp16, SDPA, T256)
  graph    the default model's packed forward through GraphedForward (CUDA graphs per bucket of
           step shapes, states copied in and out), against the same forward launched eagerly
  profile  torch profiler: our top kernels at the 1.3B layout and for the default model
  kernels  bench/kernels.py on chunk_retention (K256 V512 and the K <= 128 layouts) against fla
  parity   bench/fla_parity.py (hidden states equal to fla's RetNetModel on the same weights)

Timings are `triton.testing.do_bench` medians; ratios are from the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from triton.testing import do_bench

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)
sys.path.insert(0, ROOT)
from streamret_kernels.utils import poisoned_allocations  # noqa: E402

from streamret.model.retnet import PRESETS, RetNet, RetNetConfig, build_random  # noqa: E402

SECTIONS = ("check", "model", "default", "graph", "profile", "kernels", "parity")
MODEL_SHAPES = [(64, 512), (1, 32768)]
DEFAULT_SHAPES = [(256, 256), (64, 512), (1, 32768)]


def median_ms(fn, rep: int = 200) -> float:
    return do_bench(fn, warmup=25, rep=rep, return_mode="median")


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    if not torch.isfinite(x).all():
        return float("inf")
    return ((x.double() - ref.double()).norm() / ref.double().norm()).item()


def random_ids(B: int, T: int, vocab: int, seed: int) -> torch.Tensor:
    g = torch.Generator(device="cuda").manual_seed(seed)
    return torch.randint(0, vocab, (B, T), device="cuda", generator=g)


def ours_forward(model: RetNet, ids: torch.Tensor, fused: bool | None = None):
    with torch.inference_mode():
        return model(ids, fused=fused)[0]


# ----------------------------------------------------------------------------------------------


def section_check(only: str = "", draws: int = 3, device: str = "cuda") -> list[dict]:
    """Fused bf16 / float32 forward vs the same weights in float64 through the plain layers (the
    layouts whose name contains `only`), as means over `draws` fresh draws of weights, ids, states
    and positions: in bf16 the fused and the plain layers' errors (about 5% for `small`) move by
    10-15% from one draw to the next, so one draw against the other's 1.1x bound failed by chance."""
    rows = []
    layouts = {"small": PRESETS["small"], "K256 V512 (1.3B heads, 2 layers)": RetNetConfig(
        vocab_size=32000, d_model=1024, n_layers=2, n_heads=4, head_k_dim=256, head_v_dim=512, ffn_dim=1408)}
    lens = [1, 100, 0, 700, 64, 2000]
    for name, cfg in layouts.items():
        if only not in name:
            continue
        errs: dict[tuple, list[tuple[float, float]]] = {}  # (dtype, fused) -> (hidden, state) a draw
        for draw in range(draws):
            seed = (int(time.time()) + draw) % 10000  # fresh weights and ids every run
            ref_model = build_random(cfg, seed=seed, norm_spread=0.75).to(device).double()
            cu = torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], device=device)
            ids = torch.randint(0, cfg.vocab_size, (sum(lens),), device=device)
            state0 = ref_model.init_state(len(lens))
            state0.layers = [torch.randn_like(s) * 0.1 for s in state0.layers]
            state0.positions = torch.randint(0, 10**9, (len(lens),), device=device)
            with torch.inference_mode():
                ref, ref_state = ref_model(ids, cu_seqlens=cu, state=state0, fused=False)
            for dtype in (torch.bfloat16, torch.float32):
                model = build_random(cfg, seed=seed, norm_spread=0.75).to(device).to(dtype)
                for fused in (True, False):
                    with torch.inference_mode(), poisoned_allocations():
                        out, st = model(ids, cu_seqlens=cu, state=state0, fused=fused)
                    err_state = max(rel_err(a, b) for a, b in zip(st.layers, ref_state.layers, strict=True))
                    errs.setdefault((dtype, fused), []).append((rel_err(out, ref), err_state))
            del ref_model, model
            if device == "cuda":
                torch.cuda.empty_cache()
        for dtype in (torch.bfloat16, torch.float32):
            (err, err_state), plain = ([sum(e[i] for e in errs[dtype, fused]) / draws for i in (0, 1)]
                                       for fused in (True, False))
            # bf16: the fused layers may not be less exact than the plain layers in bf16 (10% slack, on means)
            bound = max(2e-2, 1.1 * max(plain)) if dtype == torch.bfloat16 else 1e-4
            rows.append(dict(layout=name, dtype=str(dtype).split(".")[-1], draws=draws, rel_err=err,
                             rel_err_state=err_state, plain_rel_err=plain[0], plain_rel_err_state=plain[1],
                             bound=bound, ok=err <= bound and err_state <= bound,
                             by_draw={"fused": errs[dtype, True], "plain": errs[dtype, False]}))
            print(f"check {name:34s} {rows[-1]['dtype']:9s} hidden {err:.2e} state {err_state:.2e} (plain layers "
                  f"{plain[0]:.2e} / {plain[1]:.2e}; means of {draws} draws; bound {bound:.2g}) "
                  f"{'ok' if rows[-1]['ok'] else 'FAIL'}", flush=True)
    return rows


def fla_model(cfg: RetNetConfig):
    from fla.models import RetNetConfig as FlaConfig
    from fla.models import RetNetModel

    fcfg = FlaConfig(hidden_size=cfg.d_model, num_hidden_layers=cfg.n_layers, num_heads=cfg.n_heads,
                     expand_k=cfg.head_k_dim * cfg.n_heads / cfg.d_model,
                     expand_v=cfg.head_v_dim * cfg.n_heads / cfg.d_model,
                     intermediate_size=cfg.ffn_dim, vocab_size=cfg.vocab_size, norm_eps=cfg.norm_eps)
    return RetNetModel(fcfg).cuda().to(torch.bfloat16).eval()


def section_model(presets: tuple[str, ...] = ("small", "fla-1.3b"), rounds: int = 3,
                  ab: tuple[str, list[str]] | None = None, rows: list[dict] | None = None,
                  on_row=None) -> list[dict]:
    """Ours (fused; the plain layers once) against fla's RetNetModel, measured in `rounds` alternating
    rounds (ours, fla, ours, fla, ...): the GPU's clocks drift by a few percent within a call, and
    two figures taken a minute apart compare that drift as much as the models. ab = (VAR, [values]):
    ours once per value of environment variable VAR in every round (an A/B inside one run). Each row
    is appended to `rows` (a new list if None) as it is measured, and on_row() called after it (the
    caller saves: a run stopped by a time limit keeps the rows it measured)."""
    if rounds < 1:
        raise ValueError(f"rounds={rounds}; give 1 or more")
    rows = [] if rows is None else rows
    variants = [(ab[0], v) for v in ab[1]] if ab else [(None, None)]
    before = os.environ.get(ab[0]) if ab else None  # restored after the A/B
    for preset in presets:
        cfg = PRESETS[preset]
        ours = build_random(cfg).cuda().to(torch.bfloat16)
        try:
            fla = fla_model(cfg)
        except ImportError as e:
            fla = None
            print(f"fla not importable ({e}); ours only", flush=True)
        for B, T in MODEL_SHAPES:
            ids = random_ids(B, T, cfg.vocab_size, seed=B)
            row = dict(model=preset, B=B, T=T, rounds=rounds)
            runs: dict[str, list[float]] = {}

            def run_fla(m=fla, i=ids):
                with torch.inference_mode():
                    return m(input_ids=i, use_cache=False).last_hidden_state

            for _ in range(rounds):
                for var, value in variants:
                    if var:
                        os.environ[var] = value
                    runs.setdefault("ours" if var is None else f"ours {var}={value}", []).append(
                        median_ms(lambda m=ours, i=ids: ours_forward(m, i)))
                if fla is not None:
                    runs.setdefault("fla", []).append(median_ms(run_fla))
            if ab and before is None:
                os.environ.pop(ab[0], None)
            elif ab:
                os.environ[ab[0]] = before
            row["ours_plain_ms"] = median_ms(lambda m=ours, i=ids: ours_forward(m, i, fused=False), rep=50)
            row["runs_ms"] = runs
            med = {name: statistics.median(v) for name, v in runs.items()}
            ours_name = next(n for n in runs if n.startswith("ours"))  # the first variant is "ours"
            row["ours_ms"] = med[ours_name]
            if fla is not None:
                row["fla_ms"] = med["fla"]
                row["x_fla"] = med["fla"] / row["ours_ms"]
                row["x_fla_by_round"] = [f / o for f, o in zip(runs["fla"], runs[ours_name], strict=True)]
                row["x_fla_variants"] = {n: med["fla"] / m for n, m in med.items() if n.startswith("ours")}
            rows.append(row)
            if on_row is not None:
                on_row()
            print(f"model {preset:9s} B{B:<3d} T{T:<6d} " + "  ".join(
                f"{n} {m:8.3f} ms" + (f" (x fla {med['fla'] / m:.3f})" if fla is not None and n != "fla" else "")
                for n, m in med.items()) + f"  plain layers {row['ours_plain_ms']:.3f} ms; rounds: "
                + " ".join(f"{x:.3f}" for x in row.get("x_fla_by_round", [])), flush=True)
        ours = fla = None
        torch.cuda.empty_cache()
    return rows


def load_default() -> RetNet:
    from streamret.model.spec import load_model

    return load_model("default", device="cuda", dtype="bfloat16").model


def minilm():
    from transformers import BertConfig, BertModel

    cfg = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                     intermediate_size=1536, max_position_embeddings=512, attn_implementation="sdpa")
    return BertModel(cfg).cuda().half().eval()


def section_default() -> list[dict]:
    rows = []
    model = load_default()
    for B, T in DEFAULT_SHAPES:
        ids = random_ids(B, T, model.config.vocab_size, seed=T)
        ms = median_ms(lambda i=ids: ours_forward(model, i))
        rows.append(dict(model="default", B=B, T=T, ms=ms, tokens_per_s=B * T / ms * 1e3))
        print(f"default B{B:<3d} T{T:<6d} {ms:8.3f} ms {B * T / ms / 1e3:8.2f} M tok/s", flush=True)
    bert = minilm()
    for B, T in [(256, 256)]:
        ids = random_ids(B, T, 30522, seed=1)
        mask = torch.ones_like(ids)

        def run_bert(i=ids, m=mask):
            with torch.inference_mode():
                return bert(input_ids=i, attention_mask=m).last_hidden_state
        ms = median_ms(run_bert)
        rows.append(dict(model="MiniLM-L6-shaped BERT fp16 SDPA", B=B, T=T, ms=ms, tokens_per_s=B * T / ms * 1e3))
        print(f"minilm  B{B:<3d} T{T:<6d} {ms:8.3f} ms {B * T / ms / 1e3:8.2f} M tok/s", flush=True)
    return rows


def section_graph() -> list[dict]:
    """The default model's packed forward through GraphedForward (one CUDA graph per bucket of step
    shapes; here each shape is its own bucket's, plus the padding sequence): launch overhead gone."""
    from streamret.model.graphs import GraphedForward

    rows = []
    model = load_default()
    graphed = GraphedForward(model)
    for B, T in DEFAULT_SHAPES:
        ids = random_ids(B, T, model.config.vocab_size, seed=7).reshape(-1)
        cu = torch.arange(0, (B + 1) * T, T, device="cuda", dtype=torch.int32)
        state = model.init_state(B)
        with torch.inference_mode():
            eager_out = model(ids, cu_seqlens=cu, state=state)[0]
        out = graphed(ids, cu, state)[0]
        same = rel_err(out, eager_out)
        eager = median_ms(lambda i=ids, c=cu, s=state: ours_forward_packed(model, i, c, s))
        replay = median_ms(lambda i=ids, c=cu, s=state: graphed(i, c, s))
        rows.append(dict(B=B, T=T, eager_ms=eager, graph_ms=replay, graph_vs_eager_rel_err=same,
                         graph_tokens_per_s=B * T / replay * 1e3))
        print(f"graph   B{B:<3d} T{T:<6d} eager {eager:8.3f} ms  graphed {replay:8.3f} ms "
              f"({B * T / replay / 1e3:.2f} M tok/s; vs eager {same:.1e})", flush=True)
    return rows


def ours_forward_packed(model: RetNet, ids: torch.Tensor, cu: torch.Tensor, state):
    with torch.inference_mode():
        return model(ids, cu_seqlens=cu, state=state)


def section_profile(out_dir: str, long: bool = False) -> dict:
    from torch.profiler import ProfilerActivity, profile

    tables = {}
    def fla_forward(model, ids):
        with torch.inference_mode():
            return model(input_ids=ids, use_cache=False).last_hidden_state

    def fla_13b():
        return fla_model(PRESETS["fla-1.3b"])

    cases = [("fla-1.3b B64xT512", lambda: build_random("fla-1.3b").cuda().to(torch.bfloat16), 64, 512,
              ours_forward),
             ("fla's RetNetModel, 1.3B layout, B64xT512", fla_13b, 64, 512, fla_forward),
             ("default B256xT256", load_default, 256, 256, ours_forward)]
    if long:
        cases[2:2] = [("fla-1.3b B1xT32768", lambda: build_random("fla-1.3b").cuda().to(torch.bfloat16), 1, 32768,
                       ours_forward),
                      ("fla's RetNetModel, 1.3B layout, B1xT32768", fla_13b, 1, 32768, fla_forward)]
    for name, make, B, T, forward in cases:
        try:
            model = make()
        except ImportError as e:
            print(f"profile {name}: skipped ({e})", flush=True)
            continue
        vocab = model.config.vocab_size
        ids = random_ids(B, T, vocab, seed=3)
        for _ in range(3):
            forward(model, ids)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                forward(model, ids)
            torch.cuda.synchronize()
        table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=70)
        tables[name] = table
        print(f"\nprofile {name} (3 forwards)\n{table}", flush=True)
        del model
        torch.cuda.empty_cache()
    with open(os.path.join(out_dir, "model_profile.txt"), "w") as f:
        for name, table in tables.items():
            f.write(f"== {name} (3 forwards)\n{table}\n")
    return {"file": "model_profile.txt"}


def run_child(args: list[str], out_dir: str, json_name: str) -> dict:
    """Another bench script in a child process (its own CUDA context and Triton settings). Its output goes to
    OUT/<json name>_log.txt as it runs (a run stopped by a time limit keeps what the child printed so far),
    and its tail here once it ends."""
    log_path = os.path.join(out_dir, json_name.rsplit(".", 1)[0] + "_log.txt")
    with open(log_path, "w") as log:
        res = subprocess.run([sys.executable, *args, "--out", out_dir], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                             text=True, timeout=900, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    with open(log_path) as log:
        print(log.read()[-6000:], flush=True)
    path = os.path.join(out_dir, json_name)
    return json.load(open(path)) if os.path.exists(path) else {"returncode": res.returncode}


def save(report: dict, out_dir: str) -> None:
    """OUT/model.json: every figure so far (rewritten after each section, and after each model row)."""
    with open(os.path.join(out_dir, "model.json"), "w") as f:
        json.dump(report, f, indent=1, default=str)


def summary(report: dict) -> str:
    lines = ["", "== bench/model.py summary"]
    for r in report.get("check", []):
        lines.append(f"check   {r['layout']:34s} {r['dtype']:9s} {r['rel_err']:.1e} / state {r['rel_err_state']:.1e}"
                     f" {'ok' if r['ok'] else 'FAIL'}")
    for r in report.get("model", []):
        lines.append(f"model   {r['model']:9s} B{r['B']:<3d} T{r['T']:<6d} ours {r['ours_ms']:8.2f} ms  "
                     f"fla {r.get('fla_ms', float('nan')):8.2f} ms  x fla {r.get('x_fla', float('nan')):.3f}  "
                     f"(plain layers {r['ours_plain_ms']:.2f} ms; medians of {r['rounds']} alternating rounds)")
        for name, x in r.get("x_fla_variants", {}).items():
            lines.append(f"          {name:40s} x fla {x:.3f}")
    for r in report.get("default", []):
        lines.append(f"default {r['model'][:20]:20s} B{r['B']:<3d} T{r['T']:<6d} "
                     f"{r['tokens_per_s'] / 1e6:6.2f} M tok/s")
    for r in report.get("graph", []):
        lines.append(f"graph   default B{r['B']:<3d} T{r['T']:<6d} eager {r['eager_ms']:.3f} ms  graphed "
                     f"{r['graph_ms']:.3f} ms  {r['graph_tokens_per_s'] / 1e6:.2f} M tok/s")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--sections", default=",".join(SECTIONS))
    ap.add_argument("--kernel-args", default="--layouts H8K256V512 H8K128V256 H16K64V128 --shapes N64xL512 "
                    "N256xL128 B1xT131072", help="arguments for bench/kernels.py")
    ap.add_argument("--presets", default="small,fla-1.3b", help="the model section's layouts")
    ap.add_argument("--rounds", type=int, default=3, help="the model section's alternating rounds (ours, fla)")
    ap.add_argument("--ab", default="", help="the model section times ours once per value of an environment "
                    "variable in every round, e.g. STREAMRET_NORM_FOLD=on,off (the first value is the figure "
                    "the summary reports)")
    ap.add_argument("--profile-long", action="store_true",
                    help="the profile section also profiles ours and fla's at the 1.3B layout, B1 x T32768")
    args = ap.parse_args()
    sections = [s for s in args.sections.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        sys.exit(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    if not torch.cuda.is_available():
        sys.exit("bench/model.py needs a CUDA GPU")
    os.makedirs(args.out, exist_ok=True)
    import triton

    report: dict = dict(date=time.strftime("%Y-%m-%d"), device=torch.cuda.get_device_name(), torch=torch.__version__,
                        triton=triton.__version__)
    try:
        import fla
        report["fla"] = fla.__version__
    except ImportError:
        report["fla"] = None
    for name in sections:
        t0 = time.time()
        if name == "profile":
            report[name] = section_profile(args.out, args.profile_long)
        elif name == "kernels":
            report[name] = run_child(["bench/kernels.py", *args.kernel_args.split()], args.out, "kernels.json")
        elif name == "parity":
            report[name] = run_child(["bench/fla_parity.py"], args.out, "fla_parity.json")
        elif name == "model":
            ab = None
            if args.ab:
                var, _, values = args.ab.partition("=")
                ab = (var, [v for v in values.split(",") if v])
                if not var or not ab[1]:
                    sys.exit(f"--ab {args.ab!r}: give VAR=value1,value2")
            report[name] = []
            section_model(tuple(p for p in args.presets.split(",") if p), args.rounds, ab, rows=report[name],
                          on_row=lambda: save(report, args.out))
        else:
            report[name] = globals()[f"section_{name}"]()
        print(f"[{name}: {time.time() - t0:.0f} s]", flush=True)
        save(report, args.out)
    print(summary(report))


if __name__ == "__main__":
    main()
