"""MODEL spec strings, used by every command: how a name becomes a model and its tokenizer.

    random:<preset>[:seed]   deterministic random weights (tests, benchmarks)
    <folder>                 a checkpoint folder (streamret or fla-hub layout)
    default                  the bundled model
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .retnet import RetNet, build_random, get_preset
from .tokenizer import ByteTokenizer, Tokenizer


@dataclass
class LoadedModel:
    model: RetNet
    tokenizer: Tokenizer
    spec: str


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but no CUDA GPU is visible; use --device cpu or auto")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if dtype is None or dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    if dtype not in table:
        raise ValueError(f"dtype={dtype!r}; use one of {sorted(table)} or auto")
    return table[dtype]


def load_model(spec: str, device: str | torch.device = "auto", dtype: str | torch.dtype | None = None) -> LoadedModel:
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if spec.startswith("random:"):
        parts = spec.split(":")
        if len(parts) not in (2, 3):
            raise ValueError(f"bad model spec {spec!r}; expected random:<preset>[:seed]")
        try:
            seed = int(parts[2]) if len(parts) == 3 else 0
        except ValueError:
            raise ValueError(f"bad seed in model spec {spec!r}; expected an integer") from None
        cfg = get_preset(parts[1])
        model = build_random(cfg, seed)
        tok: Tokenizer = ByteTokenizer()
        if cfg.vocab_size < tok.vocab_size:
            raise ValueError(f"preset {parts[1]!r} has vocab {cfg.vocab_size} < byte tokenizer's {tok.vocab_size}")
    else:
        from .checkpoint import load_checkpoint

        model, tok = load_checkpoint(spec)
    model = model.to(device=dev, dtype=dt).eval()
    return LoadedModel(model, tok, spec)
