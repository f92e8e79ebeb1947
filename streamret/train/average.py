"""A weighted mean of checkpoints fine-tuned from the same weights (a "model soup"): one more recipe step.

    python -m streamret.train.average LEG_A LEG_B --out streamret/assets/default [--weights 0.5 0.5]

Two legs trained from the same start by different objectives land near each other, and their mean often keeps
what each gained (session 44: the document leg's long documents and the passage leg's passages). Every leg must
have the same config and tokenizer; the mean is taken in float32 and written in the first leg's dtype (fp16 for
exported legs). `training.json` beside the mean names the legs, their weights and each leg's own training.json
(the history the legs share, their common `init_training`, once, at the top).
A document map, if the output folder holds one, was fitted for other weights: it is named stale (fit it again).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from streamret.model.checkpoint import load_checkpoint, model_fingerprint, model_from_state_dict, save_checkpoint

from .export import stale_document_map


def weighted_mean(states: list[dict[str, torch.Tensor]], weights: list[float]) -> dict[str, torch.Tensor]:
    """sum_i w_i * states[i], tensor by tensor, taken in float32 and returned in the first state's dtypes."""
    return {name: sum(w * s[name].float() for w, s in zip(weights, states)).to(t.dtype)
            for name, t in states[0].items()}


def average_checkpoints(legs: list[str | Path], weights: list[float] | None, out: str | Path) -> dict:
    """Write sum_i w_i * leg_i into `out` (weights default to equal, and must be >= 0 and sum to 1).

    Returns the record written to out/training.json."""
    if len(legs) < 2:
        raise ValueError(f"average needs two checkpoints or more, got {len(legs)}")
    weights = [1.0 / len(legs)] * len(legs) if weights is None else [float(w) for w in weights]
    if len(weights) != len(legs):
        raise ValueError(f"{len(weights)} weights for {len(legs)} checkpoints: give one weight per checkpoint")
    if min(weights) < 0 or not math.isclose(sum(weights), 1.0, abs_tol=1e-6):
        raise ValueError(f"weights {weights} must be >= 0 and sum to 1 (a mean, not an extrapolation)")
    first, tokenizer = load_checkpoint(legs[0])
    states, records = [], []
    for i, leg in enumerate(legs):
        model, tok = (first, tokenizer) if i == 0 else load_checkpoint(leg)
        if model.config != first.config:
            raise ValueError(f"{leg} has another config than {legs[0]}: only legs of one model average")
        if getattr(tok, "source_json", None) != getattr(tokenizer, "source_json", None):
            raise ValueError(f"{leg} has another tokenizer than {legs[0]}: only legs of one model average")
        states.append(model.state_dict())
        log = Path(leg) / "training.json"
        records.append({"folder": str(leg), "fingerprint": model_fingerprint(model),
                        "training": json.loads(log.read_text()) if log.is_file() else None})
    mean = weighted_mean(states, weights)
    model = model_from_state_dict(first.config, mean)  # a new model: the legs' fingerprints are cached on theirs
    out = Path(out)
    save_checkpoint(model, tokenizer, out)
    starts = [r["training"].get("init_training") if r["training"] else None for r in records]
    shared = starts[0] if starts[0] is not None and all(s == starts[0] for s in starts) else None
    if shared is not None:  # legs of one start: its history once, at the top
        for r in records:
            r["training"] = {k: v for k, v in r["training"].items() if k != "init_training"}
    record = {"recipe_step": "average", "weights": weights, "fingerprint": model_fingerprint(model),
              "legs": [{"weight": w, **r} for w, r in zip(weights, records)], "init_training": shared}
    (out / "training.json").write_text(json.dumps(record, indent=1))
    stale = stale_document_map(out, record["fingerprint"])
    if stale:
        print(stale)
    return record


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Average checkpoints fine-tuned from the same weights.")
    ap.add_argument("legs", nargs="+", help="checkpoint folders (same config and tokenizer)")
    ap.add_argument("--weights", type=float, nargs="+", default=None, help="one per leg, summing to 1 (default equal)")
    ap.add_argument("--out", required=True, help="folder for the mean (e.g. streamret/assets/default)")
    args = ap.parse_args(argv)
    try:
        record = average_checkpoints(args.legs, args.weights, args.out)
    except (ValueError, FileNotFoundError) as e:
        ap.error(str(e))
    print(f"{args.out}: " + " + ".join(f"{w} x {leg}" for w, leg in zip(record["weights"], args.legs))
          + f" (fingerprint {record['fingerprint'][:16]})")


if __name__ == "__main__":
    main()
