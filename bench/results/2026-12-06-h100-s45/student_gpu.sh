#!/usr/bin/env bash
# Session 45: right after teacher_gpu.sh on the same machine, the student phase against the GPU teacher phase's
# outputs (.device/qT45), so that one table holds both models' tokens/s on one GPU. Carry [".quality/heldout",
# ".device/qT45", ".device/old"]. Predicted: the student's rows as call 1's (same weights, same sets), the MiniLM
# rows' tokens/s now the GPU's.
set -u
T0=$SECONDS
source bench/device_env.sh
mkdir -p $OUT/quality
timeout -s KILL 400 python3 bench/quality.py student --data .quality/heldout --teacher-out .device/qT45 \
  --model default --out-dir $OUT/quality > $OUT/quality/log.txt 2>&1
echo "quality.py rc $? $((SECONDS-T0)) s"
grep -v -E "it/s|tok/s" $OUT/quality/log.txt | tail -25 | cut -c1-200
