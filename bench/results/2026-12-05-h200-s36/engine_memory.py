"""Device memory one engine holds with the default model and the GPU's settings once its graphs are captured at
start (session 36: 6.8-7.0 GiB a process in call1b's out-of-memory message, before the segment slots of
triton_fwd._segment_slot; the chunk kernel's two scratch tensors were then up to 768 MiB each at 64 sequences x
24,576 tokens). Predicted after: device_used 5.2-5.8 GiB (the graph pool 1.3-1.6 GiB smaller)."""

import json

import torch

from streamret.engine import Engine

free0, total = torch.cuda.mem_get_info()
with Engine.from_model("default", device="cuda") as engine:
    torch.cuda.synchronize()
    free, _ = torch.cuda.mem_get_info()
    graphed = engine.runner.graphed
    print(json.dumps({
        "device_used_gib": round((total - free) / 2**30, 3),  # this process's, context included, when alone there
        "engine_gib": round((free0 - free) / 2**30, 3),  # what the engine took after the context
        "torch_reserved_gib": round(torch.cuda.memory_reserved() / 2**30, 3),
        "torch_allocated_gib": round(torch.cuda.memory_allocated() / 2**30, 3),
        "graphs_captured": None if graphed is None else graphed.captures,
        "gpu": torch.cuda.get_device_name(),
    }))
