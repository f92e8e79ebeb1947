#!/usr/bin/env bash
# Session 22 call 1 (issue 14): where the engine's bound is, by configuration alone: the default run; segments per
# chunk instead of per sentence (what the sentence cuts and their booking cost); a step budget of 32 k tokens
# instead of 16 k (what a step's fixed costs are); the default again (the drift between runs).
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
run(){ name=$1; limit=$2; shift 2; d=$OUT/$name; mkdir -p $d; t0=$SECONDS
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL $limit python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.5 --engine-procs auto --tokens 1e7 --parts packed,engine "$@" --out $d > $d/log.txt 2>&1
  echo "$name rc $? $((SECONDS-t0)) s"; sed -n '/^part /,/^$/p' $d/log.txt | cut -c1-190; sed -n '/by part, wall/,/^$/p' $d/log.txt | cut -c1-260; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12; }
run base 200
run chunk 200 --segment-by chunk
run step32k 200 --step-tokens 32768
run base2 200
echo "total $((SECONDS-T0)) s"
