#!/usr/bin/env bash
# Session 44, issue 18: one passage leg from the shipped weights over the 37 training sources with the metric
# term (distill --metric: span and document errors also measured in the teacher's C^-1/2, the teacher's map of
# .device/tmetric, fitted here by `python -m streamret.train.document_map --distill .distill --teacher
# .distill/teacher --power 0.5 --out .device/tmetric`), then the new weights' own document map fitted on the GPU
# and quality.py's student phase in both roles.
# Why: the teacher's chunk mean with its own document map (power 1.0, shrink 0.1) finds 0.915 held out, 0.897 at
# 8-32k, 0.848 at >= 32k (CPU, this session), where the student with its map finds 0.908 / 0.885 / 0.788: the
# student copies the teacher's mean well where cosine looks, less well in the directions of small variance that
# the map turns up.
# Pack: .device/tf3 (train_pack of the 37 sources, share 1.0, 53.6 MiB with the metric in tf3/metric), cut by
# bench/stage_parts.sh into five 12 MiB parts; calls on one warm machine:
#   bash bench/device_legs.sh part .device/stage/tf3/pack.tar.a{a..e}     carry [that part]   (five calls)
#   bash bench/device_legs.sh unpack                                       carry []
#   bash bench/results/2026-12-06-h100-s44/metric_leg.sh                   carry [".quality/heldout", ".device/qT", ".device/old"]
# Predicted (written before the run): the query role within 0.005 of the shipped 0.885 (the cosine terms stay);
# passage cosine 0.895-0.900 and passage recall@10 0.580-0.590 (teacher 0.583); the document role with its new
# map 0.905-0.915 overall and 0.882-0.895 at 8-32k (shipped in bf16: 0.908 / 0.880); >= 32k 0.75-0.85.
set -u
export MINUTES=${MINUTES:-7.8} METRIC_W=${METRIC_W:-1.0}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
exec bash bench/device_legs.sh metric
