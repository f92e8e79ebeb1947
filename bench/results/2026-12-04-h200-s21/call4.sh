#!/usr/bin/env bash
# Session 21 call 4 (issue 14): the device's own time in a step (profiler device events, no host gaps), at the
# step shapes of the e2e engine parts: 1,024 streams (51 streams x 240 tokens, 459 runs) and 64 streams (2 x 1,850).
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
for shape in "51 240 9" "2 1850 40"; do set -- $shape; d=$OUT/s$1; mkdir -p $d
  timeout -s KILL 120 python3 bench/runner_parts.py --streams $1 --tokens $2 --runs $3 --spinners 0 --intervals 1e-4 --out $d > $d/log.txt 2>&1
  echo "== $shape rc $?"; grep -v "^ *$" $d/log.txt | tail -16; head -25 $d/runner_kernels.txt; done
