"""Offline distillation of the bundled default model from all-MiniLM-L6-v2.

    python -m streamret.train.prepare --out .distill          # data + teacher (CPU, minutes)
    python -m streamret.train.distill --data .distill --out $OUT   # training (one GPU)
    python -m streamret.train.export $OUT                     # shards -> streamret/assets/default

A later run continues from the shipped weights on a pack that fits one device call beside the tree:

    python -m streamret.train.train_pack --distill .distill --out .train
    python -m streamret.train.distill --data .train --init streamret/assets/default --out $OUT --minutes 7.5 \
        --lr 3e-4 --warmup-frac 0.05
"""
