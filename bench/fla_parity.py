"""Parity with fla's own RetNetModel: same weights, same ids, hidden states compared.

    source bench/device_env.sh; python3 bench/fla_parity.py          # on the GPU machine, fla wheels in .whl/

Builds a small fla `RetNetModel` from fla's config class with random weights (norm weights too, so a
misplaced norm shows), saves it with `save_pretrained` as sharded safetensors plus a tokenizer.json,
loads that folder with our `load_checkpoint`, and runs both models on the same ids in float32 and
bf16: a short batch (fla takes its fused_recurrent path at <= 64 tokens) and a long one (its chunk
path). Ours runs chunkwise (each kernel backend), recurrent and parallel. Relative error is
||ours - fla|| / ||fla|| over the whole [B, T, d] output, in float64. Bounds (issue 2): <= 1e-4 in
float32, <= 2e-2 in bf16, each model in the dtype named. Writes fla_parity.json under --out or $OUT,
prints a table, exits 1 when a bound fails.

TRITON_F32_DEFAULT=ieee is set (unless already set) before any kernel compiles: otherwise Triton
multiplies float32 tiles in TF32 on the GPU, in fla's kernels and in ours, and float32 parity would
measure TF32 rounding (about 1e-3) instead of the models.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TRITON_F32_DEFAULT", "ieee")

import torch  # noqa: E402

BOUNDS = {"float32": 1e-4, "bfloat16": 2e-2}
FLA_CONFIG = dict(hidden_size=256, num_hidden_layers=2, num_heads=4, expand_k=1, expand_v=2, hidden_ratio=2,
                  vocab_size=1000, norm_eps=1e-6, fuse_norm=True, fuse_swiglu=True)


def build_fla_model(seed: int):
    from fla.models import RetNetConfig, RetNetModel

    model = RetNetModel(RetNetConfig(**FLA_CONFIG)).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:  # norm weights: away from 1 so each must land in its place
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.startswith("embeddings"):
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * p.shape[1] ** -0.5)
    return model


def write_tokenizer(folder: Path, vocab_size: int) -> None:
    """A word-level tokenizer.json covering the vocab (our loader wants the tokenizer a model ships)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(vocab_size)}, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(folder / "tokenizer.json"))


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    ours, ref = ours.double(), ref.double()
    return ((ours - ref).norm() / ref.norm()).item()


def run_ours(model, ids: torch.Tensor, mode: str, backend: str | None) -> torch.Tensor:
    old = os.environ.get("STREAMRET_KERNEL_BACKEND")
    if backend:
        os.environ["STREAMRET_KERNEL_BACKEND"] = backend
    try:
        with torch.no_grad():
            return model(ids, mode=mode)[0]
    finally:
        if old is None:
            os.environ.pop("STREAMRET_KERNEL_BACKEND", None)
        else:
            os.environ["STREAMRET_KERNEL_BACKEND"] = old


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--lengths", type=int, nargs="+", default=[50, 700], help="sequence lengths (batch of 2 each)")
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=sorted(BOUNDS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.environ.get("OUT"), help="folder for fla_parity.json (default: $OUT)")
    args = ap.parse_args(argv)

    import fla
    import transformers

    from streamret.model.checkpoint import load_checkpoint

    device = torch.device(args.device)
    fla_model = build_fla_model(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "fla-retnet"
        fla_model.save_pretrained(folder, max_shard_size="1MB")  # several shards + index.json
        write_tokenizer(folder, FLA_CONFIG["vocab_size"])
        files = sorted(p.name for p in folder.iterdir())
        ours_model, _ = load_checkpoint(folder)

    backends = ["torch", "triton"] if device.type == "cuda" else ["torch"]
    variants = [("chunkwise", b) for b in backends] + [("recurrent", None), ("parallel", None)]
    g = torch.Generator().manual_seed(args.seed + 1)
    batches = {L: torch.randint(0, FLA_CONFIG["vocab_size"], (2, L), generator=g).to(device) for L in args.lengths}
    rows, failed, fla_f32 = [], False, {}
    for dtype_name in sorted(args.dtypes, key=lambda d: d != "float32"):  # float32 first: the reference
        dtype = getattr(torch, dtype_name)
        fla_m, ours_m = fla_model.to(device=device, dtype=dtype), ours_model.to(device=device, dtype=dtype)
        for L, ids in batches.items():
            with torch.no_grad():
                ref = fla_m(input_ids=ids, use_cache=False).last_hidden_state
            if dtype_name == "float32":
                fla_f32[L] = ref
            # how far each model in this dtype is from fla in float32 (context for the bf16 figures)
            fla_vs_f32 = rel_err(ref, fla_f32[L]) if L in fla_f32 else None
            for mode, backend in variants:
                out = run_ours(ours_m, ids, mode, backend)
                err = rel_err(out, ref)
                ok = err <= BOUNDS[dtype_name]
                failed |= not ok
                ours_vs_f32 = rel_err(out, fla_f32[L]) if L in fla_f32 else None
                rows.append(dict(dtype=dtype_name, length=L, batch=2, mode=mode, backend=backend or "default",
                                 rel_err=err, bound=BOUNDS[dtype_name], ok=ok, ours_vs_fla_float32=ours_vs_f32,
                                 fla_vs_fla_float32=fla_vs_f32))
                context = "" if dtype_name == "float32" or fla_vs_f32 is None else (
                    f"  [vs fla float32: ours {ours_vs_f32:.2e}, fla {fla_vs_f32:.2e}]")
                print(f"{dtype_name:9s} B2 T{L:<5d} {mode:9s} {backend or '-':6s} rel err {err:.3e} "
                      f"(bound {BOUNDS[dtype_name]:.0e}) {'ok' if ok else 'FAIL'}{context}", flush=True)

    result = dict(
        bench="fla_parity", date=datetime.date.today().isoformat(), command=" ".join(["python3", *sys.argv]),
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        torch=torch.__version__, triton=_version("triton"), fla=getattr(fla, "__version__", "?"),
        transformers=transformers.__version__, triton_f32_default=os.environ.get("TRITON_F32_DEFAULT"),
        fla_config=FLA_CONFIG, checkpoint_files=files, rows=rows, passed=not failed,
    )
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "fla_parity.json").write_text(json.dumps(result, indent=1))
    print("PASS" if not failed else "FAIL: a relative error is over its bound")
    return 1 if failed else 0


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except ImportError:
        return "absent"


if __name__ == "__main__":
    sys.exit(main())
