#!/usr/bin/env bash
# Session 45 (issue 18, deliverable 3: the student and its teacher timed on the same GPU, in one table): the
# teacher phase of bench/quality.py on the GPU. The int8 teacher (17 MiB) and the held-out data (3.7 MiB) do not fit
# a call beside the tree's 50.5 MiB, and the teacher phase needs no student weights: here, before the call,
#   rm streamret/assets/default/model.safetensors        (the working tree only; restored after with git checkout)
# carry [".quality/heldout", ".quality/teacher", ".device/old"]. Its outputs ($OUT/qT: teacher.json,
# teacher_embeddings.npz) go to .device/qT45, then the student phase, student_gpu.sh, on the same warm machine.
# Predicted: the same sets as session 43's CPU teacher phase (its fingerprint), recall figures equal to .device/qT's
# to the last digit but for float rounding on the GPU (within 1 query), the teacher's windows at 1-4 M tokens/s.
set -u
T0=$SECONDS
source bench/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
timeout -s KILL 400 python3 bench/quality.py teacher --data .quality/heldout --teacher .quality/teacher \
  --out-dir $OUT/qT > $OUT/teacher_log.txt 2>&1
echo "quality.py teacher rc $? $((SECONDS-T0)) s"
grep -v -E "it/s|tok/s" $OUT/teacher_log.txt | tail -12 | cut -c1-200
