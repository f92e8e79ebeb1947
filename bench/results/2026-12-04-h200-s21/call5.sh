#!/usr/bin/env bash
# Session 21 call 5 (issue 14): half-load p99 (55-63 ms, target 50) with the host at 14.6 of 16 cores busy, 2.4 of
# them the engines' step threads spinning through device waits. The service parts with device_wait spin and sleep,
# alternated, twice each.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
run(){ name=$1; limit=$2; shift 2; d=$OUT/$name; mkdir -p $d; t0=$SECONDS
  timeout -s KILL $limit python3 bench/e2e.py --text .device/text/man.txt.gz --engine-procs auto --front-procs 6 --tokens 1e7 --parts service "$@" --out $d > $d/log.txt 2>&1
  echo "$name rc $? $((SECONDS-t0)) s"; sed -n '/^part /,/^$/p' $d/log.txt | head -5; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12; }
for i in 1 2; do run spin$i 130 --device-wait spin; run sleep$i 130 --device-wait sleep; done
echo "total $((SECONDS-T0)) s"
