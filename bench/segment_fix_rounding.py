"""How the segment fix's roundings move the two-pass output (CPU, float64, seconds).

The two-pass chunk kernel stores span states in bf16 for bf16 inputs. With sequences cut into
segments, the state entering a span is either stored whole ("off": a second state pass from each
segment's incoming state), or as the segment-local part plus g^n times the segment's incoming state
si, added by the output pass: "sum" rounds local, then local + g^n si, to bf16; "product" rounds
local and si separately and adds the two products. Everything but those roundings is exact here, so
the printed errors are the states' share of the kernel's error.

    python3 bench/segment_fix_rounding.py [--T 16384] [--K 64] [--V 128]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
from streamret_kernels import chunk_retention_reference, retention_log_decays  # noqa: E402

SPAN, SEGMENT, H = 128, 4096, 8  # the kernel's defaults at the 1.3B layout (states every 128 tokens)


def bf16(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.bfloat16).double()


def span_outputs(q, k, v, lg, T: int) -> dict[str, torch.Tensor]:
    """o for each way of forming the span states (float64 but for those roundings)."""
    K, scale = q.shape[-1], q.shape[-1] ** -0.5
    i = torch.arange(SPAN, dtype=torch.float64)
    diff = i[:, None] - i[None, :]
    D = torch.exp(lg[:, None, None] * diff.clamp(min=0)) * (diff >= 0) * scale
    true = torch.zeros(H, K, v.shape[-1], dtype=torch.float64)
    local, incoming = torch.zeros_like(true), torch.zeros_like(true)
    outs = {m: torch.empty(T, H, v.shape[-1], dtype=torch.float64) for m in ("off", "sum", "product")}
    for s0 in range(0, T, SPAN):
        if s0 % SEGMENT == 0:
            incoming, local = true.clone(), torch.zeros_like(true)
        g_n = torch.exp(lg * (s0 % SEGMENT))[:, None, None]
        qs, ks, vs = (x[s0:s0 + SPAN].transpose(0, 1) for x in (q, k, v))
        intra = ((qs @ ks.transpose(-1, -2)) * D) @ vs
        q_dec = qs * torch.exp(lg[:, None] * (i + 1))[..., None] * scale
        states = {"off": bf16(true), "sum": bf16(bf16(local) + g_n * incoming),
                  "product": bf16(local) + g_n * bf16(incoming)}
        for mode, S in states.items():
            outs[mode][s0:s0 + SPAN] = (intra + q_dec @ S).transpose(0, 1)
        update = (ks * torch.exp(lg[:, None] * (SPAN - 1 - i))[..., None]).transpose(-1, -2) @ vs
        true = torch.exp(lg * SPAN)[:, None, None] * true + update
        local = torch.exp(lg * SPAN)[:, None, None] * local + update
    return outs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--T", type=int, default=16384)
    ap.add_argument("--K", type=int, default=64)
    ap.add_argument("--V", type=int, default=128)
    args = ap.parse_args()
    if args.T % SPAN:
        raise SystemExit(f"--T {args.T}: use a multiple of {SPAN}")
    g = torch.Generator().manual_seed(0)
    q = bf16(torch.randn(args.T, H, args.K, generator=g, dtype=torch.float64))
    k = bf16(torch.randn(args.T, H, args.K, generator=g, dtype=torch.float64) * args.K**-0.5)
    v = bf16(torch.randn(args.T, H, args.V, generator=g, dtype=torch.float64))
    lg = retention_log_decays(H).double()
    ref, _ = chunk_retention_reference(q, k, v, lg)
    for mode, o in span_outputs(q, k, v, lg, args.T).items():
        err, err_rounded = ((x - ref).norm().item() / ref.norm().item() for x in (o, bf16(o)))
        print(f"{mode:8s} o from float64: {err:.2e} (states' roundings only), {err_rounded:.2e} with o in bf16")


if __name__ == "__main__":
    main()
