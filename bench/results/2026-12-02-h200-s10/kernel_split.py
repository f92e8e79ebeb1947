# ruff: noqa: B023  (closures run inside the loop iteration that makes them)
# Session 10 device script, kept as run (from the repo root after `source bench/device_env.sh`).
"""Per-kernel device time of chunk_retention_triton at N64xL512 H8K256V512 bf16, fresh and h0 (torch profiler)."""
import json
import sys

import torch

sys.path.insert(0, "bench")
from issue13 import kernel_split_ms
from streamret_kernels import retention_log_decays
from streamret_kernels.chunk_retention.triton_fwd import chunk_retention_triton
from triton.testing import do_bench

H, K, V, N, L = 8, 256, 512, 64, 512
g = torch.Generator(device="cuda").manual_seed(7)
T = N * L
def rn(*s, sc=1.0):
    return (torch.randn(*s, device="cuda", generator=g) * sc).to(torch.bfloat16)
q, k, v = rn(T, H, K), rn(T, H, K, sc=K ** -0.5), rn(T, H, V)
s0 = torch.randn(N, H, K, V, device="cuda", generator=g) * 0.1
cu = torch.arange(0, T + 1, L, device="cuda", dtype=torch.int32)
lg = retention_log_decays(H).cuda()
for mode, h0 in (("fresh", None), ("h0", s0), ("fresh", None), ("h0", s0)):
    def f():
        return chunk_retention_triton(q, k, v, lg, cu_seqlens=cu, initial_state=h0)
    ms = do_bench(f, warmup=25, rep=200, return_mode="median")
    split = {n[:40]: round(t, 4) for n, t in kernel_split_ms(f, reps=10).items() if t > 0.005}
    print(mode, round(ms, 4), json.dumps(split), flush=True)
