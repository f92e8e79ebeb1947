#!/usr/bin/env bash
# Session 20 call 5 (issue 14): EngineConfig.tokenize_procs A/B on the H200: the engine parts without (A) and with
# (B) tokenizer processes, then the service parts (six fronts) with and without.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
run(){ name=$1; limit=$2; shift 2; d=$OUT/$name; mkdir -p $d; t0=$SECONDS
  timeout -s KILL $limit python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 1 --engine-procs auto "$@" --out $d > $d/log.txt 2>&1
  echo "$name rc $? $((SECONDS-t0)) s"; sed -n '/^part /,/^$/p' $d/log.txt; }
run A 100 --tokens 1e7 --parts packed,engine
run B 100 --tokens 1e7 --parts packed,engine --tokenize-procs
run Bsvc 170 --front-procs 6 --parts packed,service --tokenize-procs
run Asvc 170 --front-procs 6 --parts packed,service
echo "total $((SECONDS-T0)) s"
