"""Weights out of training: fp16 safetensors shards small enough to travel, and their merge.

The GPU job writes `model-0000k-of-0000n.safetensors` (each <= 15 MiB; tensors bigger than half a
shard are cut into row blocks `name@k`), `config.json` (the RetNetConfig) and `tokenizer.json`;
`merge_shards` joins them into a checkpoint folder written by `streamret.model.checkpoint.save_checkpoint`
(the bundled default model lives in streamret/assets/default/).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from streamret.model.checkpoint import model_fingerprint, model_from_state_dict, save_checkpoint
from streamret.model.document_map import MAP_FILE, DocumentMap
from streamret.model.retnet import RetNet, RetNetConfig
from streamret.model.tokenizer import HFTokenizer

SHARD_BYTES = 15 * 2**20
DEFAULT_ASSETS = Path(__file__).resolve().parents[1] / "assets" / "default"
_SHARD = re.compile(r"model-(\d{5})-of-(\d{5})\.safetensors$")


def fp16_state(model: RetNet) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.state_dict().items()}


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def _split_large(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cut tensors bigger than half a shard into row blocks named `name@k` (the embedding matrix is 23 MB)."""
    out = {}
    for name, t in state.items():
        nbytes = t.numel() * t.element_size()
        if nbytes <= SHARD_BYTES // 2:
            out[name] = t
            continue
        rows = max(1, (SHARD_BYTES // 2) // max(1, nbytes // t.shape[0]))
        for k, block in enumerate(torch.split(t, rows)):
            out[f"{name}@{k}"] = block.contiguous()
    return out


def _join_split(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out, parts = {}, {}
    for name, t in state.items():
        base, sep, k = name.rpartition("@")
        if sep:
            parts.setdefault(base, {})[int(k)] = t
        else:
            out[name] = t
    for base, blocks in parts.items():
        out[base] = torch.cat([blocks[k] for k in range(len(blocks))])
    return out


def save_shards(model: RetNet, tokenizer_json: str | Path, out_dir: str | Path, meta: dict | None = None) -> list[Path]:
    """Write the model as fp16 shards (<= SHARD_BYTES each) + config.json + tokenizer.json into out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in _split_large(fp16_state(model)).items():
        nbytes = t.numel() * t.element_size()
        if size + nbytes > SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += nbytes
    for old in out_dir.glob("model-*-of-*.safetensors"):
        old.unlink()
    paths = []
    for i, shard in enumerate(shards):
        path = out_dir / f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        _atomic_save(shard, path)
        paths.append(path)
    (out_dir / "config.json").write_text(json.dumps(model.config.to_dict(), indent=1))
    if Path(tokenizer_json).resolve() != (out_dir / "tokenizer.json").resolve():
        shutil.copyfile(tokenizer_json, out_dir / "tokenizer.json")
    if meta is not None:
        (out_dir / "training.json").write_text(json.dumps(meta, indent=1))
    return paths


def merge_shards(src_dir: str | Path, dst_dir: str | Path = DEFAULT_ASSETS) -> Path:
    """Join the shards in src_dir into dst_dir/model.safetensors; copy config.json, tokenizer.json (+ training.json)."""
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    shards = sorted(p for p in src_dir.iterdir() if _SHARD.search(p.name))
    if not shards:
        raise FileNotFoundError(f"no model-0000k-of-0000n.safetensors shards in {src_dir}")
    n = int(_SHARD.search(shards[0].name).group(2))
    if len(shards) != n:
        raise FileNotFoundError(f"{src_dir} holds {len(shards)} of {n} shards; copy all of them")
    state: dict[str, torch.Tensor] = {}
    for p in shards:
        state.update(load_file(str(p)))
    cfg = RetNetConfig.from_dict(json.loads((src_dir / "config.json").read_text()))
    model = model_from_state_dict(cfg, _join_split(state))  # names any missing or misshapen tensor
    save_checkpoint(model, HFTokenizer(src_dir / "tokenizer.json"), dst_dir)
    if (src_dir / "training.json").exists():
        shutil.copyfile(src_dir / "training.json", dst_dir / "training.json")
    stale = stale_document_map(dst_dir, model_fingerprint(model))
    if stale:
        print(stale, file=sys.stderr)
    return dst_dir / "model.safetensors"


def stale_document_map(folder: Path, fingerprint: str) -> str:
    """A warning when `folder` holds a document map fitted for other weights (new weights were just written
    there), else "". The map stays (the `document` role refuses it and says why) until it is fitted again."""
    path = folder / MAP_FILE
    if not path.is_file() or DocumentMap.read(path).fingerprint == fingerprint:
        return ""
    return (f"warning: {path} was fitted for the weights before these, so the document role is off until it is "
            f"fitted again: python -m streamret.train.document_map --model {folder} --distill .distill")


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Merge fp16 shards from the GPU job into one model.safetensors.")
    ap.add_argument("src", help="folder holding model-0000k-of-0000n.safetensors, config.json, tokenizer.json")
    ap.add_argument("--dst", default=str(DEFAULT_ASSETS))
    a = ap.parse_args()
    print(merge_shards(a.src, a.dst))
