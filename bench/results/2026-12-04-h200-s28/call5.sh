#!/usr/bin/env bash
# Session 28 call 5 (issue 14): the whole list with a 32,768-token step budget against 16,384, this session's tree
# (call 4: engine 1,024 streams 10.0-10.5 M against 8.1 M). Predicted at 32,768: engine 1,024 +15-30%, 64 within
# the spread; service at saturation +5-20% (steps of ~30 streams, under 16,384 tokens: less to gain); half-load
# ack p99 within the spread (steps of 2-3 streams); batch short +10-25% (steps of ~60 streams at the budget),
# long within the spread (1.4 streams a step).
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
RUNS="w32 w16"
for r in $RUNS; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  tokens=32768; [ $r = w16 ] && tokens=16384
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 240 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 1 --engine-procs auto --front-procs 6 --short-docs 8000 --step-tokens $tokens --out $d > $d/log.txt 2>&1
  echo "$r rc $? $((SECONDS-t0)) s"; sed -n '/^part /,/^$/p' $d/log.txt | cut -c1-200; grep -B2 -A12 "FAILED\|Traceback" $d/log.txt | head -20
done
PYTHONPATH=$PWD:$PYTHONPATH python3 bench/e2e_brief.py $(for r in $RUNS; do echo $OUT/$r; done)
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
