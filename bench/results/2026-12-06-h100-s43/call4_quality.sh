#!/usr/bin/env bash
# Session 43, issue 18: the student phase of bench/quality.py on the GPU (bf16), with the default model's new
# document map (role document), against the teacher phase run on this session's CPU (.device/qteacher).
# Carry [".quality/heldout", ".device/qteacher", ".device/old"].
# Predicted: the plain student within 0.005 of session 18's bf16 figures (0.885 overall, 0.940 / 0.869 / 0.606 by
# bucket; passage cosine 0.898, passage recall@10 0.585 against the teacher's 0.583); documents in role document
# 0.900-0.912 overall, 8-32k 0.880-0.890 (the CPU read 0.885), >= 32k 0.73-0.82 (CPU 0.788): bf16 moves a few
# queries either way.
set -u
T0=$SECONDS
source bench/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
mkdir -p $OUT/quality
timeout -s KILL 400 python3 bench/quality.py student --data .quality/heldout --teacher-out .device/qteacher \
  --model default --out-dir $OUT/quality > $OUT/quality/log.txt 2>&1
echo "quality.py rc $? $((SECONDS-T0)) s"
grep -v -E "it/s|tok/s" $OUT/quality/log.txt | tail -25 | cut -c1-200
