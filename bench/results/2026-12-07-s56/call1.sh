#!/usr/bin/env bash
# Session 56, call 1 (no kind named; carry [".whl", ".device/text", ".device/old", ".device/ab_base"]; about 500 s).
# 1. Session 55's call_split.sh: the A/B of WorkItem.split_after against the commit before it (its header has the
#    prediction and the rule), into $OUT/split.
# 2. Where time is left (started before 300 s): session 55's A/B of the batch job's sub-batches at once (its
#    next_call1.sh's header has the reasoning), here through bench/e2e_ab.py on the warm machine, no warm-up run:
#    --max-sub-batches-per-engine 2 (A, the default: 32 long documents on 9 engine processes run as 18, then the
#    other 14) against 4 (B: all 32 at once), bench/e2e.py --parts packed,batch, two pairs, into $OUT/subbatches.
#    Predicted: long documents +5-15%, short documents within the spread.
#    Rule: B becomes the default if long documents read higher in both pairs and short ones not lower in both.
#    (Three tokenize threads an engine against two, first written here, was read in session 36: +16% and -15% at
#    64 streams, so it is not asked again.)
set -u
T0=$SECONDS
nvidia-smi --query-gpu=name --format=csv,noheader
OUT0=$OUT
mkdir -p $OUT0/split && OUT=$OUT0/split bash bench/results/2026-12-07-s55/call_split.sh
echo "split A/B done at $((SECONDS-T0)) s"
if [ $((SECONDS-T0)) -lt 300 ]; then
  source bench/device_env.sh > /dev/null
  mkdir -p $OUT0/subbatches
  python3 bench/e2e_ab.py --pairs 2 --timeout 70 --a "--max-sub-batches-per-engine 2" \
    --b "--max-sub-batches-per-engine 4" --out $OUT0/subbatches -- \
    --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,batch --engine-procs auto --short-docs 8000
  (cd $OUT0/subbatches && tar czf all.tgz a1 b1 b2 a2 && rm -rf a1 b1 b2 a2)
fi
echo "total $((SECONDS-T0)) s"
