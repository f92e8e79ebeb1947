#!/usr/bin/env bash
# Session 34 (not run: no device machine came): the form of call1b.sh for less than about 450 s of device time (a
# start costs 60-90 s of it; this call runs at most 270 s). The GPU tests of session 33's device path first
# (gpu_tests.sh, 170 s cap), then the engine parts alone (packed reference, 64 and 1,024 streams) under a 100 s cap. Predicted: tests all pass;
# engine 64 streams 6.5-8 M, 1,024 streams 9.4-11.2 M on a slow host (about 1.5x on a fast one), as in session 33's
# call1.sh header.
set -u
source bench/results/2026-12-05-h200-s34/gpu_tests.sh 170
t1=$SECONDS
d=$OUT/engine; mkdir -p $d
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 100 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,engine --engine-procs auto --out $d > $d/log.txt 2>&1
echo "engine rc $? $((SECONDS-t1)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
PYTHONPATH=$PWD:$PYTHONPATH python3 bench/e2e_brief.py $OUT/engine
grep -m1 "model name" /proc/cpuinfo
echo "total $((SECONDS-T0)) s"
