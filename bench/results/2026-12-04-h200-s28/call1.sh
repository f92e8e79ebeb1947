#!/usr/bin/env bash
# For session 28's first call (issue 14), written at the end of session 27 (not run yet): the whole list twice on
# session 27's final tree (word table with a dict for long words; a tokenizer process's reply as whole-batch
# arrays), default sizes, as call 2 of session 27 ran session 26's tree. tokenize_cost (session 27 call 5, a
# slower machine): a tokenizer process's warm work a token -29 to -56% against session 26's tree; call 4 (an
# earlier state of this tree) read 6 of 8 paired parts higher. Predicted against session 27 call 2 (same
# sizes, another machine, so read loosely): tokenizer processes 0.6-1.0 us a token in the engine parts (0.9-1.3
# there); engine 64 / 1,024 streams 4.5-6.2 M / 6.3-8.5 M; service at saturation 0.70-0.80 x engine, ack p99
# 0.5-0.8 s; half-load ack p99 42-60 ms; batch long 0.50-0.60, short 0.33-0.40 of packed.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
RUNS="fulla fullb"
for r in $RUNS; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 240 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 1 --engine-procs auto --front-procs 6 --short-docs 8000 --out $d > $d/log.txt 2>&1
  echo "$r rc $? $((SECONDS-t0)) s"; sed -n '/^part /,/^$/p' $d/log.txt | cut -c1-200; grep -B2 -A12 "FAILED\|Traceback" $d/log.txt | head -20
done
PYTHONPATH=$PWD:$PYTHONPATH python3 bench/e2e_brief.py $(for r in $RUNS; do echo $OUT/$r; done)
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
