#!/usr/bin/env bash
# Session 34, fifth call: session 31's next_session_call2.sh, unchanged below.
# For session 32's second call (issue 14), written at the end of session 31 (not run yet): three tokenize threads
# an engine with split bursts (the default since session 31) against two, engine parts at 1e8 tokens, alternated
# twice (two first in one pair, three first in the other). With split bursts a wave of a step's acks is cut by all
# idle threads at once: on session 31's slow host the tokenize leg at 64 streams fell 9.3-10.2 -> 6.6-7.4 ms with
# two threads and was still the round trip's largest leg; at 64 streams that host had 9 of 16 cores busy. Session
# 30 (fast host, split on four threads) read -8 to -11% at 64 streams, with steps of 3.5 streams instead of 4.7:
# three threads split a wave three ways but the batches go out together (`_Group`). Predicted with three: tokenize
# p50 -15-30%, 64 streams +5-12% on a slow host (within the spread on a fast one), streams a step 4.5-5, 1,024
# within the spread. Rule: make three the GPU's default if 64 streams reads >= 5% more in both pairs and 1,024 not
# 5% less in both.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS; RUNS=""
for r in two1 three1 three2 two2; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  n=2; [ ${r:0:5} = three ] && n=3
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 80 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,engine --engine-procs auto --tokens 1e8 --tokenizer-threads $n --out $d > $d/log.txt 2>&1
  echo "$r rc $? $((SECONDS-t0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
  RUNS="$RUNS $r"
done
PYTHONPATH=$PWD:$PYTHONPATH python3 bench/e2e_brief.py $(for r in $RUNS; do echo $OUT/$r; done)
grep -m1 "model name" /proc/cpuinfo
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
