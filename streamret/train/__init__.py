"""Offline distillation of the bundled default model from all-MiniLM-L6-v2.

    python -m streamret.train.prepare --out .distill          # data + teacher (CPU, minutes)
    python -m streamret.train.distill --data .distill --out $OUT   # training (one GPU)
    python -m streamret.train.export $OUT                     # shards -> streamret/assets/default
"""
