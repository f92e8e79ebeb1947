#!/usr/bin/env bash
# Session 51, call 3 (asked for nvidia-h200; whichever card comes). Carry [".whl", ".device/text"] (.whl now with the
# grpcio-health-checking and grpcio-reflection 1.84.0 wheels that call 2 lacked).
# On an H200: session 48's call1.sh (issue 13's kernel lines with fla).
# On an H100: issue 14's whole list at this tree, twice (bench/e2e.py as session 40's calls 4-5). Predicted from
#   session 41's H100 runs with auto (9) engine processes: engine 64 streams 0.29-0.37 of packed, 1,024 streams
#   0.40-0.51, service at saturation 0.63-0.71 of the engine with 46-54 streams a step, half-load ack p99 50-80 ms,
#   batch long 0.45-0.55, short 0.30-0.37: every issue 14 target still missed.
set -u
T0=$SECONDS
source bench/device_env.sh
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
  bash bench/results/2026-12-07-s48/call1.sh
  exit
fi
RUNS=""
for r in whole1 whole2; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  timeout -s KILL 200 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 1 --engine-procs auto \
    --front-procs 6 --short-docs 8000 --out $d > $d/log.txt 2>&1
  echo "$r rc $? $((SECONDS-t0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
  RUNS="$RUNS $r"
done
python3 bench/e2e_brief.py $(for r in $RUNS; do echo $OUT/$r; done)
for r in $RUNS; do grep -A9 "^part " $OUT/$r/log.txt; done
grep -m1 "model name" /proc/cpuinfo
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
