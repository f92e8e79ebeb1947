#!/usr/bin/env bash
# Session 23 call 9 (issue 14): call 8 (a new machine) read 5.74 M at 1,024 streams with the engine processes on
# their own MPS daemon, against call 7's 7.94 M with an MPS daemon started by hand (call 6, the same machine as
# call 7, 5.76 M without MPS). Calls on different machines differ by 20-25%, so MPS needs an A/B on one machine:
# STREAMRET_MPS=off against auto, alternated, the engine parts alone at 3e7 tokens.
# Predicted: auto +25-40% at 1,024 streams, +5-15% at 64 streams (window 4).
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
run(){ name=$1; limit=$2; shift 2; d=$OUT/$name; mkdir -p $d; t0=$SECONDS
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL $limit python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.5 --engine-procs auto --parts engine "$@" --out $d > $d/log.txt 2>&1
  echo "$name rc $? $((SECONDS-t0)) s"; sed -n '/^part /,/^$/p' $d/log.txt | cut -c1-190; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12; }
STREAMRET_MPS=off run off1 90
STREAMRET_MPS=auto run auto1 90
STREAMRET_MPS=off run off2 90
STREAMRET_MPS=auto run auto2 90
echo "total $((SECONDS-T0)) s"
