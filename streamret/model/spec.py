"""MODEL spec strings, used by every command: how a name becomes a model and its tokenizer.

    random:<preset>[:seed]   deterministic random weights (tests, benchmarks)
    <folder>                 a checkpoint folder (streamret or fla-hub layout, see checkpoint.py)
    default                  the bundled model in streamret/assets/default/
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import load_checkpoint, model_fingerprint
from .document_map import Roles, find_document_map
from .retnet import RetNet, build_random, get_preset
from .tokenizer import ByteTokenizer, Tokenizer

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "assets" / "default"


@dataclass
class LoadedModel:
    model: RetNet
    tokenizer: Tokenizer
    spec: str
    fingerprint: str = ""  # model_fingerprint of the weights as loaded (before the cast to the run dtype)
    roles: Roles | None = None  # the embedding roles it serves (document_map.py); None: query only

    def __post_init__(self):
        if self.roles is None:
            self.roles = Roles(None, "it was loaded without one", self.spec)


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
    """Model (on device, in dtype, eval mode), tokenizer and fingerprint for a MODEL spec (module doc)."""
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    folder: Path | None = None
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
    elif spec == "default":
        if not (DEFAULT_MODEL_DIR / "config.json").is_file():
            raise ValueError(
                f"the default model is not bundled yet (expected in {DEFAULT_MODEL_DIR}); "
                "use --model random:tiny or a checkpoint folder"
            )
        model, tok = load_checkpoint(DEFAULT_MODEL_DIR)
        folder = DEFAULT_MODEL_DIR
    elif Path(spec).exists():
        model, tok = load_checkpoint(spec)
        folder = Path(spec)
    else:
        raise ValueError(
            f"bad model spec {spec!r}: not random:<preset>[:seed], not default, and no file or folder by that name"
        )
    fingerprint = model_fingerprint(model)  # before the cast: one checkpoint, one fingerprint
    roles = Roles(*find_document_map(folder, fingerprint, model.config.out_embed_dim), model=spec, folder=folder)
    model = model.to(device=dev, dtype=dt).eval()
    return LoadedModel(model, tok, spec, fingerprint, roles)
