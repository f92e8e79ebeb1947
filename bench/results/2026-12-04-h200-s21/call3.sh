#!/usr/bin/env bash
# Session 21 call 3 (issue 14): what the device does in a step. At 1,024 streams the engine's steps wait 6-8 ms
# for the device; with 12 processes the GPU may be most of the bound. One engine process (in this one), the
# engine part at 1,024 streams under the torch profiler (kernels by device time), and the runner alone by part.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
d=$OUT/profile; mkdir -p $d
timeout -s KILL 240 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 1 --engine-procs 1 --streams 1024 \
  --tokens 4e6 --profile-rows 40 --parts packed,engine,profile --out $d > $d/log.txt 2>&1; echo "profile rc $?"
sed -n '/^part /,/^$/p' $d/log.txt; grep -A12 "Traceback" $d/log.txt | head -12
head -60 $d/e2e_profile.txt | cut -c1-200
timeout -s KILL 120 python3 bench/runner_parts.py --streams 51 --tokens 240 --runs 9 --spinners 0 --intervals 1e-4 --out $OUT > $OUT/runner_parts.txt 2>&1; echo "runner_parts rc $?"
tail -15 $OUT/runner_parts.txt
echo "total $((SECONDS-T0)) s"
