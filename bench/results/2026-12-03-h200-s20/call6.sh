#!/usr/bin/env bash
# Session 20 call 6 (issue 14): call 5's service parts again, now with grpcio-health-checking and grpcio-reflection
# 1.84.0 carried in .whl (call 5 lacked them): six fronts, with (B) and without (A) tokenizer processes, then B's
# engine parts once more.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
run(){ name=$1; limit=$2; shift 2; d=$OUT/$name; mkdir -p $d; t0=$SECONDS
  timeout -s KILL $limit python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 1 --engine-procs auto "$@" --out $d > $d/log.txt 2>&1
  echo "$name rc $? $((SECONDS-t0)) s"; sed -n '/^part /,/^$/p' $d/log.txt; grep -A12 "FAILED" $d/log.txt | head -12; }
run Bsvc 200 --front-procs 6 --parts packed,service --tokenize-procs
run Asvc 200 --front-procs 6 --parts packed,service
run B2 100 --tokens 1e7 --parts packed,engine --tokenize-procs
echo "total $((SECONDS-T0)) s"
