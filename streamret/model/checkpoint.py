"""Checkpoints: safetensors + JSON in, safetensors + JSON out, never pickle.

Two folder layouts load:

    streamret   config.json {"format": "streamret", "config": RetNetConfig.to_dict(), "tokenizer": {...}}
                model.safetensors (our parameter names), tokenizer.json for an HF tokenizer
    fla-hub     config.json {"model_type": "retnet", ...fla's RetNetConfig}, model.safetensors or shards
                listed in model.safetensors.index.json, tokenizer.json (fla's key names, see FLA_KEYS)

fla's RetNet layer is ours key for key (same projections, half-split RoPE with base^(-2i/K), per-head
RMSNorm + swish gate, SwiGLU), so loading it is a renaming; anything fla can build that we do not
compute (short convolutions, feature maps, grouped k/v heads, hybrid attention layers, ...) is refused.
torchscale state dicts go through `streamret.model.torchscale` first.

`model_fingerprint` names a model's exact function (config + every weight); the state store keeps it
beside each saved stream state and refuses states written by another model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .retnet import RetNet, RetNetConfig
from .tokenizer import ByteTokenizer, HFTokenizer, Tokenizer

FORMAT = "streamret"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
TOKENIZER_FILE = "tokenizer.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")

# fla parameter name (after an optional "model." prefix) -> ours; {i} is the layer index.
FLA_KEYS = {
    "embeddings.weight": "embeddings.weight",
    "norm.weight": "norm.weight",
    "lm_head.weight": "lm_head.weight",
    "layers.{i}.attn_norm.weight": "layers.{i}.attn_norm.weight",
    "layers.{i}.mlp_norm.weight": "layers.{i}.mlp_norm.weight",
    **{f"layers.{{i}}.attn.{p}_proj.weight": f"layers.{{i}}.attn.{p}_proj.weight" for p in "qkvgo"},
    # fuse_norm=True (the default) names the gated norm g_norm_swish_gate, fuse_norm=False g_norm
    "layers.{i}.attn.g_norm_swish_gate.weight": "layers.{i}.attn.g_norm.weight",
    "layers.{i}.attn.g_norm.weight": "layers.{i}.attn.g_norm.weight",
    **{f"layers.{{i}}.mlp.{p}_proj.weight": f"layers.{{i}}.mlp.{p}_proj.weight" for p in ("gate", "up", "down")},
}
_FLA_PATTERNS = [(re.compile("^" + re.escape(k).replace(r"\{i\}", r"(\d+)") + "$"), v) for k, v in FLA_KEYS.items()]


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be loaded as it is; the message says what to change."""


# ----------------------------------------------------------------------------------------------
# save


def save_checkpoint(model: RetNet, tokenizer: Tokenizer, folder: str | Path) -> Path:
    """Write model.safetensors + config.json (+ tokenizer.json for an HF tokenizer) into folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_embeddings:
        tensors.pop("lm_head.weight", None)  # the same tensor as embeddings.weight; safetensors refuses aliases
    _atomic_write(folder / WEIGHTS_FILE, lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))
    tok_entry = _tokenizer_entry(tokenizer)
    if isinstance(tokenizer, HFTokenizer):
        _atomic_write(folder / TOKENIZER_FILE, lambda p: p.write_text(tokenizer.source_json, encoding="utf-8"))
    config = {"format": FORMAT, "config": model.config.to_dict(), "tokenizer": tok_entry}
    _atomic_write(folder / CONFIG_FILE, lambda p: p.write_text(json.dumps(config, indent=2) + "\n"))
    return folder


def _tokenizer_entry(tokenizer: Tokenizer) -> dict:
    if isinstance(tokenizer, ByteTokenizer):
        return {"type": "bytes"}
    if isinstance(tokenizer, HFTokenizer):
        return {"type": "hf", "file": TOKENIZER_FILE}
    raise CheckpointError(
        f"cannot save tokenizer {type(tokenizer).__name__}; use ByteTokenizer or HFTokenizer (tokenizer.json)"
    )


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------
# load


def load_checkpoint(folder: str | Path) -> tuple[RetNet, Tokenizer]:
    """Load a streamret or fla-hub checkpoint folder; weights keep the dtype they were saved in."""
    folder = Path(folder)
    if folder.is_file():
        if folder.suffix in PICKLE_SUFFIXES:
            raise CheckpointError(_pickle_refusal(folder))
        raise CheckpointError(f"{folder} is a file; pass the checkpoint folder that holds {CONFIG_FILE}")
    if not folder.is_dir():
        raise CheckpointError(f"no checkpoint folder at {folder}")
    cfg_path = folder / CONFIG_FILE
    if not cfg_path.is_file():
        raise CheckpointError(f"no {CONFIG_FILE} in {folder}; a checkpoint folder needs one")
    try:
        raw = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{cfg_path} is not valid JSON: {e}") from None
    if raw.get("format") == FORMAT:
        if not isinstance(raw.get("config"), dict):
            raise CheckpointError(f"{cfg_path} has no 'config' object")
        config = RetNetConfig.from_dict(raw["config"])
        tensors = read_safetensors_folder(folder)
        tokenizer = _load_tokenizer(folder, raw.get("tokenizer"))
    elif raw.get("model_type") == "retnet":
        fla_config_to_streamret(raw)  # refuse what we do not compute before reading gigabytes
        config, tensors = fla_to_streamret(raw, read_safetensors_folder(folder))
        tokenizer = _load_tokenizer(folder, {"type": "hf", "file": TOKENIZER_FILE})
    else:
        raise CheckpointError(
            f"{cfg_path} is neither a streamret checkpoint (format: {FORMAT!r}) nor an fla-hub RetNet "
            f"(model_type: 'retnet'); got format={raw.get('format')!r}, model_type={raw.get('model_type')!r}"
        )
    if tokenizer.vocab_size > config.vocab_size:
        raise CheckpointError(
            f"tokenizer {tokenizer.name!r} has {tokenizer.vocab_size} tokens but the model's vocab_size is "
            f"{config.vocab_size}; ship the tokenizer the model was trained with"
        )
    return model_from_state_dict(config, tensors), tokenizer


def read_safetensors_folder(folder: Path) -> dict[str, torch.Tensor]:
    """model.safetensors, or every shard named in model.safetensors.index.json."""
    single, index = folder / WEIGHTS_FILE, folder / INDEX_FILE
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{index} has no weight_map")
        files = sorted(set(weight_map.values()))
    elif single.is_file():
        files = [WEIGHTS_FILE]
    else:
        pickled = sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickled:
            raise CheckpointError(_pickle_refusal(pickled[0]))
        raise CheckpointError(f"no {WEIGHTS_FILE} or {INDEX_FILE} in {folder}")
    tensors: dict[str, torch.Tensor] = {}
    for name in files:
        path = folder / name
        if Path(name).name != name:
            raise CheckpointError(f"weight shard {name!r} in {INDEX_FILE} must be a file name inside {folder}")
        if not path.is_file():
            raise CheckpointError(f"weight shard {name!r} listed in {INDEX_FILE} is missing from {folder}")
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                if key in tensors:
                    raise CheckpointError(f"tensor {key!r} appears in more than one shard of {folder}")
                tensors[key] = f.get_tensor(key)
    return tensors


def _pickle_refusal(path: Path) -> str:
    return (
        f"refusing {path.name}: pickled weights can run code when loaded. Convert them once, in an environment "
        f"you trust, with: python -c \"import torch; from safetensors.torch import save_file; "
        f"save_file(torch.load('{path.name}', weights_only=True), 'model.safetensors')\" "
        f"(or transformers' save_pretrained(..., safe_serialization=True))"
    )


def _load_tokenizer(folder: Path, entry: dict | None) -> Tokenizer:
    kind = (entry or {}).get("type")
    if kind == "bytes":
        return ByteTokenizer()
    if kind == "hf":
        path = folder / entry.get("file", TOKENIZER_FILE)
        if not path.is_file():
            hint = " (tokenizer.model alone is not read: save the fast tokenizer as tokenizer.json)" if (
                folder / "tokenizer.model").is_file() else ""
            raise CheckpointError(f"no {path.name} in {folder}; copy the tokenizer the model was trained with{hint}")
        return HFTokenizer(path)
    raise CheckpointError(f"{folder / CONFIG_FILE}: unknown tokenizer entry {entry!r}; use type 'bytes' or 'hf'")


def model_from_state_dict(config: RetNetConfig, tensors: Mapping[str, torch.Tensor]) -> RetNet:
    """A RetNet holding exactly these tensors; a missing, unexpected or misshapen key is an error naming it."""
    with torch.device("meta"):  # shapes only; decays do not change any shape
        skeleton = RetNet(dataclasses.replace(config, decays=None))
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    if config.tie_embeddings:
        expected.pop("lm_head.weight", None)
        tensors = {k: v for k, v in tensors.items() if k != "lm_head.weight"}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing:
        raise CheckpointError(f"checkpoint lacks {len(missing)} tensor(s) the config needs, first {missing[0]!r}")
    if unexpected:
        raise CheckpointError(f"checkpoint has {len(unexpected)} tensor(s) the config has no place for, "
                              f"first {unexpected[0]!r}")
    for k, shape in expected.items():
        if tuple(tensors[k].shape) != shape:
            raise CheckpointError(f"tensor {k!r} has shape {tuple(tensors[k].shape)}, the config needs {shape}")
    dtype = tensors["embeddings.weight"].dtype
    if not dtype.is_floating_point:
        raise CheckpointError(f"embeddings.weight has dtype {dtype}; checkpoint weights must be floating point")
    # Build on the meta device and adopt the loaded tensors: no random init of billions of weights.
    with torch.device("meta"):
        model = RetNet(config)
    model.load_state_dict({k: v.to(dtype) for k, v in tensors.items()}, strict=not config.tie_embeddings, assign=True)
    if config.tie_embeddings:
        model.lm_head.weight = model.embeddings.weight
    return model.reset_buffers().eval()


# ----------------------------------------------------------------------------------------------
# fla-hub layout


def fla_config_to_streamret(raw: Mapping) -> RetNetConfig:
    """fla's RetNetConfig (config.json dict) -> ours; refuses what fla can build and we do not compute."""

    def get(name, default=None):
        return raw.get(name, default)

    refusals = [
        (get("use_short_conv", False), "use_short_conv=true (short convolutions on q/k/v)"),
        (get("feature_map") is not None, f"feature_map={get('feature_map')!r}"),
        (get("num_kv_heads") not in (None, get("num_heads", 8)), f"num_kv_heads={get('num_kv_heads')} != num_heads"),
        (not get("use_output_gate", True), "use_output_gate=false"),
        (get("attn") is not None, "hybrid layers with standard attention (attn is set)"),
        (get("attnres_block_size") is not None, "attention residuals (attnres_block_size is set)"),
        (get("hidden_act", "swish") != "swish", f"hidden_act={get('hidden_act')!r} (only swish)"),
    ]
    for bad, what in refusals:
        if bad:
            raise CheckpointError(f"fla RetNet checkpoint uses {what}, which streamret does not implement")
    hidden, heads = int(get("hidden_size", 2048)), int(get("num_heads", 8))
    dims = {}
    for name, expand in (("k", get("expand_k", 1.0)), ("v", get("expand_v", 2.0))):
        total = hidden * float(expand)
        if not math.isclose(total, round(total)) or round(total) % heads:
            raise CheckpointError(f"hidden_size*expand_{name} = {total} must be an integer divisible by "
                                  f"num_heads={heads}")
        dims[name] = round(total) // heads
    ffn = get("intermediate_size")
    if ffn is None:
        ratio = get("hidden_ratio", 2)  # fla's config default is 2; its GatedMLP reads None as 4
        ratio = 4 if ratio is None else ratio
        ffn = 256 * math.ceil(int(hidden * ratio * 2 / 3) / 256)
    tie = bool(get("tie_word_embeddings", False))
    return RetNetConfig(
        vocab_size=int(get("vocab_size", 32000)), d_model=hidden, n_layers=int(get("num_hidden_layers", 24)),
        n_heads=heads, head_k_dim=dims["k"], head_v_dim=dims["v"], ffn_dim=int(ffn),
        norm_eps=float(get("norm_eps", 1e-6)), tie_embeddings=tie, lm_head=tie,
    )


def fla_to_streamret(raw: Mapping, tensors: Mapping[str, torch.Tensor]) -> tuple[RetNetConfig, dict]:
    """Config and tensors of an fla-hub folder -> ours (RetNetModel or RetNetForCausalLM weights)."""
    config = fla_config_to_streamret(raw)
    out: dict[str, torch.Tensor] = {}
    for key, t in tensors.items():
        name = key.removeprefix("model.")
        for pattern, target in _FLA_PATTERNS:
            m = pattern.match(name)
            if m:
                ours = target.replace("{i}", m.group(1)) if m.groups() else target
                break
        else:
            raise CheckpointError(f"fla checkpoint tensor {key!r} has no counterpart in streamret's RetNet")
        if ours in out:
            raise CheckpointError(f"fla checkpoint has two tensors for {ours!r} (second: {key!r})")
        out[ours] = t
    if raw.get("elementwise_affine") is False:  # fla's gated norm then has no weight: the identity scale
        dtype = next(iter(tensors.values())).dtype
        for i in range(config.n_layers):
            out.setdefault(f"layers.{i}.attn.g_norm.weight", torch.ones(config.head_v_dim, dtype=dtype))
    # RetNetModel folders have no head; RetNetForCausalLM ones have lm_head.weight, or share the embedding
    has_head = "lm_head.weight" in out or (config.tie_embeddings and _is_causal_lm(raw))
    return dataclasses.replace(config, lm_head=has_head, tie_embeddings=config.tie_embeddings and has_head), out


def _is_causal_lm(raw: Mapping) -> bool:
    return any("CausalLM" in a for a in raw.get("architectures") or [])


# ----------------------------------------------------------------------------------------------
# fingerprint

_FINGERPRINT_ATTR = "_streamret_fingerprint"


def model_fingerprint(model: RetNet) -> str:
    """sha256 over the config JSON and every tensor (sorted names; dtype, shape, bytes), cached on the model.

    `load_model` computes it right after loading, before casting to the run dtype, so one checkpoint
    has one fingerprint on a CPU in float32 and on a GPU in bf16. Weights changed in place after
    the first call are not seen: the cache assumes an inference model.
    """
    cached = getattr(model, _FINGERPRINT_ATTR, None)
    if cached is not None:
        return cached
    h = hashlib.sha256()
    h.update(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"\0{name}\0{str(t.dtype).removeprefix('torch.')}\0{list(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    digest = h.hexdigest()
    setattr(model, _FINGERPRINT_ATTR, digest)
    return digest
