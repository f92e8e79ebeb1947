#!/usr/bin/env bash
# Session 20 call 7 (issue 14): the whole e2e list in one run with tokenizer processes on (the new default on a GPU):
# packed, engine, service (six fronts); then the batch parts in a second run.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
run(){ name=$1; limit=$2; shift 2; d=$OUT/$name; mkdir -p $d; t0=$SECONDS
  timeout -s KILL $limit python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 1 --engine-procs auto "$@" --out $d > $d/log.txt 2>&1
  echo "$name rc $? $((SECONDS-t0)) s"; sed -n '/^part /,/^$/p' $d/log.txt; grep -A12 "FAILED" $d/log.txt | head -12; }
run full 260 --front-procs 6 --tokens 1e7 --parts packed,engine,service
run batch 200 --short-docs 8000 --parts packed,batch
echo "total $((SECONDS-T0)) s"
