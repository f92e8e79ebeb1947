# ruff: noqa: B023  (closures run inside the loop iteration that makes them)
# Session 10 device script, kept as run (from the repo root after `source bench/device_env.sh`).
"""(The second of two runs: the first timed h0 only with 128x64 8w BT128, 64x64 4w BT64 and the default.)
h0 mode at N64xL512: the state pass's tilings (wide default, 128x64 8w BT128, 64x64 4w BT64) against fresh."""
import sys
from dataclasses import replace

import torch

sys.path.insert(0, "bench")
from issue13 import kernel_split_ms
from streamret_kernels import chunk_retention_reference, retention_log_decays
from streamret_kernels.chunk_retention.triton_fwd import TwoPassConfig, chunk_retention_triton
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
b = TwoPassConfig()
q2, k2, v2 = q[:1024].double(), k[:1024].double(), v[:1024].double()
ro, _ = chunk_retention_reference(q2, k2, v2, lg, cu_seqlens=cu[:3], initial_state=s0[:2].double())
rf, _ = chunk_retention_reference(q2, k2, v2, lg, cu_seqlens=cu[:3])
w = replace(b, state_BK=128, state_BV=64, state_warps=8, state_BT=128)
for name, cfg, h in (("fresh 128x64 8w BT128", w, None), ("fresh default", b, None),
                  ("h0 128x64 8w BT128 3st", replace(w, state_stages=3), s0),
                     ("h0 64x128 8w BT128", replace(w, state_BK=64, state_BV=128), s0),
                  ("h0 128x64 8w BT128", w, s0)):
    def f():
        return chunk_retention_triton(q, k, v, lg, cu_seqlens=cu, initial_state=h, config=cfg)
    o, _ = f()
    r = ro if h is not None else rf
    err = ((o[:1024].double() - r).norm() / r.norm()).item()
    ms = do_bench(f, warmup=25, rep=200, return_mode="median")
    split = {n[:20]: round(t, 4) for n, t in kernel_split_ms(f, reps=10).items() if t > 0.005}
    print(name, round(ms, 4), f"err {err:.2e}", split, flush=True)
