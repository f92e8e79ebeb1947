#!/usr/bin/env bash
# Session 23 call 5 (issue 14): where the first tokenize thread of each engine is at 1,024 streams (new:
# stats()["tokenize_samples"]), beside the step thread. Call 4: neither 128 KiB stage calls nor 4 stage threads
# moved the 1,024-stream figure (4.88-5.54 M) or the tokenize leg (p50 72-130 ms); the tokenizer processes ran
# 1.36-1.66 us a token, so 0.6-0.8 of a core an engine of the 2 they have. Expected: the stage thread mostly in
# its child's call (_call / recv) or waiting for work (_take); a large share in the GIL after the call
# (PieceLayout.of_items, intake) would point at the GIL.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
run(){ name=$1; limit=$2; shift 2; d=$OUT/$name; mkdir -p $d; t0=$SECONDS
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL $limit python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.5 --tokens 1e7 --engine-procs auto "$@" --out $d > $d/log.txt 2>&1
  echo "$name rc $? $((SECONDS-t0)) s"; sed -n '/^part /,/^$/p' $d/log.txt | cut -c1-190; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12; }
run samples 120 --parts engine --step-samples 1
run samples_w16 120 --parts engine --step-samples 1 --window 16
echo "total $((SECONDS-T0)) s"
