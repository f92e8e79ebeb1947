#!/usr/bin/env bash
# Session 13, issue 18, two calls on one warm machine:
#   train ARGS...  one distillation run from the shipped weights (.train carried), weights kept in /tmp/m13;
#   eval           the student phase of bench/quality.py on the GPU over /tmp/m13 (.quality/heldout, the teacher
#                  phase's output in .device/qT and .tcache carried).
set -u
source bench/device_env.sh
what=$1; shift
if [ "$what" = train ]; then
  python3 -m streamret.train.distill --data .train --init streamret/assets/default --out /tmp/m13 --ckpt /tmp/ckpt13 \
    --fresh --log-every 25 "$@" 2>&1 | tee $OUT/train.log | grep -v '^{"step"' | tail -8
  grep '^{"step"' $OUT/train.log | tail -3; cp /tmp/m13/training.json $OUT/
else
  export TRITON_CACHE_DIR=/tmp/tc; mkdir -p /tmp/tc; tar xJf .tcache/tc.tar.xz -C /tmp
  python3 -m streamret.train.export /tmp/m13 --dst /tmp/m13x > $OUT/export.log 2>&1 || { cat $OUT/export.log; exit 1; }
  python3 bench/quality.py student --data .quality/heldout --teacher-out .device/qT --model /tmp/m13x --device cuda \
    --no-engine --out-dir $OUT/S 2>$OUT/student_err.log | tail -22
  tail -3 $OUT/student_err.log
fi
