"""Session 44 (issue 18): the mean of two checkpoints' weights (both fine-tuned from the shipped default model), fp16.

    python bench/results/2026-12-06-cpu-s44/soup.py A B OUT [--weight-a 0.5]
"""
import argparse
import sys

sys.path.insert(0, ".")
import torch  # noqa: E402

from streamret.model.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("a"), ap.add_argument("b"), ap.add_argument("out")
ap.add_argument("--weight-a", type=float, default=0.5)
args = ap.parse_args()
ma, tok = load_checkpoint(args.a)
mb, _ = load_checkpoint(args.b)
sa, sb = ma.state_dict(), mb.state_dict()
w = args.weight_a
ma.load_state_dict({k: (w * sa[k].float() + (1 - w) * sb[k].float()).to(sa[k].dtype) for k in sa})
save_checkpoint(ma, tok, args.out)
print(f"{args.out}: {w} x {args.a} + {1 - w} x {args.b}")
