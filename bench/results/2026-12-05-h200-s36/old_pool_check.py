"""The cause of call1b's failed steps, shown on the old GraphedForward.clear (graphs dropped, pool kept): a capture
into a pool whose graphs are all gone. Expected: RuntimeError naming use_count on the second call (old), and the
new clear() capturing again (its test: tests/gpu/test_fused_model_gpu.py::test_graphs_are_captured_again_after_clear)."""

import torch

from streamret.model.graphs import GraphedForward
from streamret.model.retnet import PRESETS, build_random

model = build_random(PRESETS["small"], seed=1).cuda().to(torch.bfloat16)
ids = torch.randint(0, 1000, (300,), device="cuda")
cu = torch.tensor([0, 100, 300], device="cuda", dtype=torch.int32)
g = GraphedForward(model)
g(ids, cu, model.init_state(2))
g.graphs.clear()  # the old clear(): the same pool afterwards
try:
    g(ids, cu, model.init_state(2))
    print("old clear: captured again (the pool was not the cause)")
except RuntimeError as e:
    print("old clear: RuntimeError:", str(e).splitlines()[0][:160])
