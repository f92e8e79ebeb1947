"""Session 19: K256 V512 N64 x L512, both passes in one launch (TwoPassConfig.fused) against two launches.

Every variant is checked against float64 on all 64 sequences before it is timed; the fused default is
run 20 more times and compared with its first result (a race between a span's state programs and its
output blocks would show as a changed output)."""
import json
import os
import sys
import time
from dataclasses import replace

import torch
from triton.testing import do_bench

sys.path.insert(0, "bench")
from issue13 import kernel_split_ms  # noqa: E402
from streamret_kernels import chunk_retention_reference, retention_log_decays  # noqa: E402
from streamret_kernels.chunk_retention.triton_fwd import TwoPassConfig, chunk_retention_triton  # noqa: E402

H, K, V, N, L = 8, 256, 512, 64, 512
g = torch.Generator(device="cuda").manual_seed(int(time.time()) % 10000)  # fresh data every run
T = N * L
rn = lambda *s, sc=1.0: (torch.randn(*s, device="cuda", generator=g) * sc).to(torch.bfloat16)  # noqa: E731
q, k, v = rn(T, H, K), rn(T, H, K, sc=K ** -0.5), rn(T, H, V)
s0 = torch.randn(N, H, K, V, device="cuda", generator=g) * 0.1
cu = torch.arange(0, T + 1, L, device="cuda", dtype=torch.int32)
lg = retention_log_decays(H).cuda()
refs = {mode: chunk_retention_reference(q.double(), k.double(), v.double(), lg, cu_seqlens=cu,
                                        initial_state=None if mode == "fresh" else s0.double())
        for mode in ("h0", "fresh")}
b = TwoPassConfig()
variants = [
    ("two launches", replace(b, fused=False)),
    ("fused lag 8 (default)", b),
    ("fused lag 0", replace(b, fuse_lag=0)),
    ("fused lag 2", replace(b, fuse_lag=2)),
    ("fused lag 32", replace(b, fuse_lag=32)),
    ("fused lag 128", replace(b, fuse_lag=128)),
    ("fused state 128x128 BT64", replace(b, state_BV=128, state_BT=64)),
]
rel = lambda x, r: ((x.double() - r).norm() / r.norm()).item()  # noqa: E731
out = open(os.path.join(os.environ.get("OUT", "."), "k6.jsonl"), "w")
for mode in ("h0", "fresh"):
    h = s0 if mode == "h0" else None
    ro, rs = refs[mode]
    for name, cfg in variants:
        f = lambda h=h, cfg=cfg: chunk_retention_triton(q, k, v, lg, cu_seqlens=cu, initial_state=h, config=cfg)  # noqa: E731
        try:
            o, st = f()
            torch.cuda.synchronize()
            rec = dict(name=name, mode=mode, err_o=rel(o, ro), err_state=rel(st, rs))
            if name.startswith("fused lag 8"):
                same = 0
                for _ in range(20):
                    o2, st2 = f()
                    same += int(torch.equal(o2, o) and torch.equal(st2, st))
                rec["repeat_equal_of_20"] = same
            rec["ms"] = do_bench(f, warmup=25, rep=300, return_mode="median")
            rec["split"] = {n[:24]: round(t, 4) for n, t in kernel_split_ms(f, reps=10).items() if t > 0.003}
        except Exception as e:  # noqa: BLE001
            print(name, mode, "FAILED", repr(e)[:400], flush=True)
            continue
        out.write(json.dumps(rec) + "\n")
        out.flush()
        print(f"{mode:5s} {name:26s} {rec['ms']:.4f} ms err {rec['err_o']:.2e}/{rec['err_state']:.2e} "
              f"{rec.get('repeat_equal_of_20', '')} {rec['split']}", flush=True)
