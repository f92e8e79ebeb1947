# ruff: noqa: B023  (closures run inside the loop iteration that makes them)
# Session 10 device script, kept as run (from the repo root after `source bench/device_env.sh`).
"""Kernel A/B: chunk_retention_triton from whichever streamret_kernels is on the path (HEAD, old, ptr),
H8 K256 V512 bf16, fresh and h0, N64xL512 and B1xT32768. Checks vs float64 first, then do_bench median."""
import json
import sys

import torch
from streamret_kernels import chunk_retention_reference, retention_log_decays
from streamret_kernels.chunk_retention.triton_fwd import chunk_retention_triton
from streamret_kernels.utils import poisoned_allocations
from triton.testing import do_bench

name = sys.argv[1]
H, K, V = 8, 256, 512
rows = []
for case, N, L in (("N64xL512", 64, 512), ("B1xT32768", 1, 32768)):
    g = torch.Generator(device="cuda").manual_seed(7)
    T = N * L
    def rn(*s, sc=1.0):
        return (torch.randn(*s, device="cuda", generator=g) * sc).to(torch.bfloat16)
    q, k, v = rn(T, H, K), rn(T, H, K, sc=K ** -0.5), rn(T, H, V)
    s0 = torch.randn(N, H, K, V, device="cuda", generator=g) * 0.1
    cu = torch.arange(0, T + 1, L, device="cuda", dtype=torch.int32)
    lg = retention_log_decays(H).cuda()
    for mode in ("fresh", "h0"):
        h0 = s0 if mode == "h0" else None
        n = min(N, 4)
        t = int(cu[n])
        with poisoned_allocations():
            o, ht = chunk_retention_triton(q, k, v, lg, cu_seqlens=cu, initial_state=h0)
        ro, rs = chunk_retention_reference(q[:t].double(), k[:t].double(), v[:t].double(), lg, cu_seqlens=cu[: n + 1],
                                           initial_state=None if h0 is None else h0[:n].double())
        err = ((o[:t].double() - ro).norm() / ro.norm()).item() if torch.isfinite(o).all() else float("inf")
        errs = ((ht[:n].double() - rs).norm() / rs.norm()).item() if torch.isfinite(ht).all() else float("inf")
        ms = do_bench(lambda: chunk_retention_triton(q, k, v, lg, cu_seqlens=cu, initial_state=h0), warmup=25, rep=300,
                      return_mode="median")
        r = dict(variant=name, case=case, mode=mode, err_o=err, err_state=errs, ms=ms)
        rows.append(r)
        print(json.dumps(r), flush=True)
