"""K256 V512 chunk kernel: scores recomputed per V-block (one pass) against scores written once by a
first kernel (ChunkConfig.precompute_scores), at N64 x L512 and B1 x T131072, beside fla.

    python bench/chunk_scores.py [--out DIR]

Correctness first (fresh random bf16 data, poisoned outputs, float64 reference on the first
sequences), then `do_bench` medians. Prints a table; writes DIR/chunk_scores.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, replace

import torch
from triton.testing import do_bench

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
from streamret_kernels import chunk_retention_reference, retention_log_decays  # noqa: E402
from streamret_kernels.chunk_retention.triton_fwd import chunk_retention_triton, pick_config  # noqa: E402
from streamret_kernels.utils import poisoned_allocations  # noqa: E402

H, K, V = 8, 256, 512
SHAPES = {"N64xL512": (64, 512), "B1xT131072": (1, 131072)}


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    if not torch.isfinite(x).all():
        return float("inf")
    return ((x.double() - ref.double()).norm() / ref.double().norm()).item()


def run_shape(name: str, N: int, L: int) -> list[dict]:
    rows = []
    T = N * L
    g = torch.Generator(device="cuda").manual_seed(N)
    q = torch.randn(T, H, K, device="cuda", generator=g).bfloat16()
    k = (torch.randn(T, H, K, device="cuda", generator=g) * K**-0.5).bfloat16()
    v = torch.randn(T, H, V, device="cuda", generator=g).bfloat16()
    s0 = torch.randn(N, H, K, V, device="cuda", generator=g) * 0.1
    cu = torch.arange(0, T + 1, L, device="cuda", dtype=torch.int32)
    lg = retention_log_decays(H).cuda()
    base = pick_config(K, V, torch.bfloat16, L)
    variants = {"one pass (default)": base, "precomputed scores": replace(base, precompute_scores=True),
                "precomputed, BV 64, 8 warps": replace(base, precompute_scores=True, BV=64, num_warps=8),
                "precomputed, 2 stages": replace(base, precompute_scores=True, num_stages=2)}
    # float64 reference on the first 4 sequences (N64), or the first 8192 tokens (one long sequence)
    n_chk, t_chk = (4, 4 * L) if N > 1 else (1, 8192)
    ro, _ = chunk_retention_reference(
        q[:t_chk].double(), k[:t_chk].double(), v[:t_chk].double(), lg,
        cu_seqlens=torch.arange(0, t_chk + 1, min(L, t_chk)), initial_state=s0[:n_chk].double())

    def run(cfg):
        return chunk_retention_triton(q, k, v, lg, cu_seqlens=cu, initial_state=s0, config=cfg)

    for vname, cfg in variants.items():
        try:
            with poisoned_allocations():
                o, _ = run(cfg)
            err = rel_err(o[:t_chk], ro)
            ms = do_bench(lambda c=cfg: run(c), warmup=25, rep=100, return_mode="median")
        except Exception as e:  # a variant that fails to compile or faults is reported, not fatal
            err, ms = float("nan"), float("nan")
            print(f"{name} {vname}: {type(e).__name__}: {str(e)[:200]}", flush=True)
        rows.append(dict(shape=name, variant=vname, config=asdict(cfg), ms=ms, rel_err=err))
        print(f"{name:11s} {vname:30s} {ms:7.3f} ms  err {err:.2e}", flush=True)
    try:
        from fla.ops.retention import chunk_retention as fla_chunk

        fargs = (q.view(N, L, H, K), k.view(N, L, H, K), v.view(N, L, H, V))
        fla_ms = do_bench(lambda: fla_chunk(*fargs, initial_state=s0, output_final_state=True),
                          warmup=25, rep=100, return_mode="median")
    except ImportError:
        fla_ms = float("nan")
    rows.append(dict(shape=name, variant="fla chunk_retention", ms=fla_ms))
    print(f"{name:11s} {'fla chunk_retention':30s} {fla_ms:7.3f} ms", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    args = ap.parse_args()
    rows = [r for name, (N, L) in SHAPES.items() for r in run_shape(name, N, L)]
    with open(os.path.join(args.out, "chunk_scores.json"), "w") as f:
        json.dump(dict(torch=torch.__version__, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
