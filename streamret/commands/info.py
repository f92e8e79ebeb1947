"""`streamret info MODEL`: config, parameter count, state bytes per stream, fingerprint, embedding roles."""

from __future__ import annotations

import argparse
import json

from . import add_model_args, load_from_args


def register(subparsers) -> None:
    p = subparsers.add_parser("info", help="print a model's config, size, state bytes per stream and fingerprint")
    add_model_args(p, positional=True)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    loaded = load_from_args(args)
    model, cfg = loaded.model, loaded.model.config
    info = {
        "model": loaded.spec,
        "fingerprint": loaded.fingerprint,
        "parameters": model.num_parameters(),
        "state_bytes_per_stream": cfg.state_bytes_per_stream(),
        "embedding_dim": cfg.out_embed_dim,
        "roles": list(loaded.roles.available),  # "document" only when the model ships a document map
        "tokenizer": {"name": loaded.tokenizer.name, "vocab_size": loaded.tokenizer.vocab_size},
        "config": cfg.to_dict(),
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    per_layer = f"{cfg.n_layers} layers x float32 [{cfg.n_heads}, {cfg.head_k_dim}, {cfg.head_v_dim}] + pooling sums"
    print(f"model          {info['model']}")
    print(f"fingerprint    {info['fingerprint']}")
    print(f"parameters     {info['parameters']:,}")
    print(f"state/stream   {info['state_bytes_per_stream']:,} bytes ({per_layer})")
    print(f"embedding dim  {info['embedding_dim']}")
    print(f"roles          {', '.join(info['roles'])}" + ("" if "document" in info["roles"]
                                                          else f" (no document map: {loaded.roles.missing})"))
    print(f"tokenizer      {info['tokenizer']['name']} (vocab {info['tokenizer']['vocab_size']:,})")
    print("config")
    for key, value in info["config"].items():
        print(f"  {key:<14} {value}")
    return 0
