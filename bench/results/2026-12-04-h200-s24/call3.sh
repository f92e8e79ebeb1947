#!/usr/bin/env bash
# Session 24 call 3 (issue 14): a tokenize call's results handed over in parts (EngineConfig.tokenize_first_part,
# new: 2 chunks first, parts doubling up to 32) against all at the call's end (0, as before), alternated on one
# machine. Call 2's legs: the tokenize leg (accepted -> queued) was the longest, mean 10.5 of 25.7 ms at 64
# streams, 98 of 217 ms at 1,024. Predicted: that leg's mean -30-50%; engine 64 streams +10-20%, 1,024 streams
# +5-15% (the host's CPU, 12 of 16 cores busy, caps it).
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
run(){ name=$1; limit=$2; shift 2; d=$OUT/$name; mkdir -p $d; t0=$SECONDS
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL $limit python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.5 --parts engine --engine-procs auto "$@" --out $d > $d/log.txt 2>&1
  echo "$name rc $? $((SECONDS-t0)) s"; sed -n '/^part /,/^$/p' $d/log.txt | cut -c1-150; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
  grep -h "engine_accepted->engine_queued\|engine_queued->engine_applied\|ack latency" $d/log.txt; }
run parts1 150 --tokenize-first-part 2
run whole1 150 --tokenize-first-part 0
run parts2 150 --tokenize-first-part 2
run whole2 150 --tokenize-first-part 0
run first1 150 --tokenize-first-part 1
echo "total $((SECONDS-T0)) s"
