#!/usr/bin/env bash
# Session 49, call 3 (for a start with about 250 s of device time left): call2.sh cut to one run a form, keys first
# (its first check against float64 at the real shape, and its first timing), then scores; 75 s a run.
# Predictions as call2.sh's.
set -u
T0=$SECONDS
source bench/device_env.sh
for f in keys scores; do
  d=$OUT/$f; mkdir -p $d
  STREAMRET_TWO_PASS_FORM=$f timeout -s KILL 75 python3 bench/kernels.py --out $d --layouts H8K256V512 \
    --shapes N64xL512 --no-fla > $d/log.txt 2>&1
  echo "$f rc $? $((SECONDS-T0)) s"
  grep -E "N64xL512|err|Error" $d/log.txt | tail -3 | cut -c1-180
done
