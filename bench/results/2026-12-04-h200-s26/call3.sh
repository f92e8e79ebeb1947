#!/usr/bin/env bash
# Session 26 call 3 (issue 14): the whole list twice on this tree, with tokenize_join_bytes 32 KiB now the default
# (call 1) and the batch parts at four times the documents (128 long, 32,000 short: call 2 read batch long
# 0.37 / 0.47 of packed with them against 0.29 / 0.29 at the default sizes, short 0.27 / 0.31 against 0.27 / 0.27).
# Predicted (machines differ 20-25%): engine 64 streams 4-4.7 M (+14-24% over session 25's default), 1,024 streams
# 5.3-8 M; service at saturation 0.65-0.8 x engine; batch long 0.37-0.47, short 0.27-0.31.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
RUNS="fulla fullb"
for r in $RUNS; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 260 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 1 --engine-procs auto --front-procs 6 --long-docs 128 --short-docs 32000 --out $d > $d/log.txt 2>&1
echo "$r rc $? $((SECONDS-t0)) s"; sed -n '/^part /,/^$/p' $d/log.txt | cut -c1-200; grep -B2 -A12 "FAILED\|Traceback" $d/log.txt | head -30
done
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
