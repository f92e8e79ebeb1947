#!/usr/bin/env bash
# Session 34 (not run: no device machine came): session 33's call1.sh (bench/results/2026-12-05-h200-s33/) reordered
# and shortened for a session whose device time went to failed starts (about 700 s left): the GPU tests of session
# 33's device path first (the runner's close embeddings; correctness before speed), then the whole list with a 220 s
# cap (e2e.json is saved after each part, so a cut run keeps what it measured). Predictions as in that script's
# header. The Triton cache comes back as $OUT/tcache.tgz.
set -u
source bench/results/2026-12-05-h200-s34/gpu_tests.sh 150
t1=$SECONDS
d=$OUT/whole; mkdir -p $d
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 220 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 1 --engine-procs auto --front-procs 6 --short-docs 8000 --out $d > $d/log.txt 2>&1
echo "whole rc $? $((SECONDS-t1)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
PYTHONPATH=$PWD:$PYTHONPATH python3 bench/e2e_brief.py $OUT/whole
sed -n '/^part /,/^$/p' $OUT/whole/log.txt | cut -c1-200
grep -A2 "^batch_long: chunks applied" $OUT/whole/log.txt
grep -m1 "model name" /proc/cpuinfo
tar czf $OUT/all.tgz -C $OUT whole && rm -rf $OUT/whole
tar czf $OUT/tcache.tgz .tcache; echo "total $((SECONDS-T0)) s"
