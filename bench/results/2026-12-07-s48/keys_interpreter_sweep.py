"""Session 48: the keys output form against float64 on Triton's interpreter over every dtype, three span / tile shapes,
with and without h0, whole and cut into 128-token segments. TRITON_INTERPRET=1 python this_file. As it ran."""
import os, sys, torch, numpy as np
sys.path.insert(0, "tests")
from streamret_kernels.utils import interpreter_bf16_like_gpu
from streamret_kernels import chunk_retention_reference, retention_log_decays
from streamret_kernels.chunk_retention import triton_fwd as fwd
def rel(a,b): a=a.double(); b=b.double(); return float((a-b).norm()/b.norm())
small = dict(BT=32, BV=32, num_warps=4, state_every=32, state_BT=16, state_BK=16, state_BV=16, state_warps=4,
             narrow_state_BK=16, narrow_state_BV=16, narrow_state_BT=16)
with interpreter_bf16_like_gpu():
  for dtype in (torch.float32, torch.bfloat16, torch.float16):
    for se, bt, kb, bv in ((32, 32, 16, 32), (64, 32, 32, 16), (128, 32, 16, 64)):
      for with_state in (True, False):
        for seg in (0, 128):
          g = torch.Generator().manual_seed(3)
          lens = [1, 70, 0, 33, 16, 130, 5, 300]; H, K, V = 2, 40, 48
          T = sum(lens); cu = torch.tensor([0, *np.cumsum(lens).tolist()], dtype=torch.int32)
          q = torch.randn(T, H, K, generator=g).to(dtype); k = (torch.randn(T, H, K, generator=g) * K**-0.5).to(dtype)
          v = torch.randn(T, H, V, generator=g).to(dtype)
          h0 = torch.randn(len(lens), H, K, V, generator=g) if with_state else None
          lg = retention_log_decays(H, [0.97, 0.5])
          cfg = fwd.TwoPassConfig(**(small | dict(state_every=se, BT=bt, BV=bv, output_form="keys", key_block=kb)))
          o, ht = fwd.chunk_retention_triton(q, k, v, lg, cu_seqlens=cu, initial_state=h0, config=cfg, segment_len=seg)
          ro, rt = chunk_retention_reference(q.double(), k.double(), v.double(), lg, cu_seqlens=cu, initial_state=None if h0 is None else h0.double())
          print(dtype, se, bt, kb, bv, with_state, seg, f"{rel(o, ro):.2e} {rel(ht, rt):.2e}", flush=True)
