#!/usr/bin/env bash
# Session 45 (issue 18): the passage InfoNCE (distill --passage-nce-weight, new) in a leg from the shipped weights
# (session 45's mean), over the 37 sources of .device/tf3, then the new weights' document map fitted on the GPU and
# their evaluation in both roles. The pack first, one call a part on one warm machine:
#   bash bench/device_legs.sh part .device/stage/tf3/pack.tar.aa   carry [".device/stage/tf3/pack.tar.aa"]  (... ae)
#   bash bench/device_legs.sh unpack                               carry []
# (or bench/results/2026-12-06-h100-s45/stage_tf3_two_calls.sh 1 and 2), then this script, carry
# [".quality/heldout", ".device/qT"] (MINUTES of training, ~100 s more for map and eval).
# Measured first (CPU, the shipped weights, 128 pairs of git-doc; passage_nce_probe.py in ../2026-12-06-cpu-s45):
# in-batch top-1 0.16-0.47 and loss 3.6-2.0 at query lengths 8-64, temperature 0.05: the term starts at 25-45x the
# span loss (0.08) times its weight; hence PNCE 0.05.
# Predicted (PNCE 0.05, temperature 0.05, 256 pairs of a step in groups of 4 windows of one document, lr 1e-4,
# MINUTES, 4.0 here): the in-batch top-1 starts at 0.3-0.45 and rises past 0.6; held-out passage recall@10
# 0.583 -> 0.59-0.60, passage cosine 0.898 -> 0.890-0.897, the plain document embedding 0.875-0.885, the document
# role with its own map 0.905-0.915 (8-32k 0.885-0.895). Validation passages (CPU, afterwards, val_passages.py):
# 0.5645 -> 0.575-0.59.
# Session 45 ran 42 steps of it (call 8, 1.7 s a step: a query length per pair, fixed since; in-batch top-1 0.54
# -> 0.55): passage recall@10 0.593, cosine 0.896, plain document 0.882. For the next session: MINUTES=7.0 (the
# steps should take about 0.3 s now: check tok_per_s in the log against session 44's control, ~600 k), then here
# merge the returned shards (python -m streamret.train.export DIR --dst FOLDER) and read the validation passages
# (python bench/results/2026-12-06-cpu-s45/val_passages.py FOLDER streamret/assets/default --weights 1 0).
set -u
export MINUTES=${MINUTES:-4.0} PNCE=${PNCE:-0.05}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
exec bash bench/device_legs.sh passage
