#!/usr/bin/env bash
# Session 52, call 4 (any card). Carry [".whl", ".device/text", ".device/old", ".device/ab_base"].
# On an H200: session 51's call5.sh (issue 13's kernel lines with fla), then one pair (base / new) of the below.
# Otherwise: issue 14's whole list (bench/e2e.py as session 51's call 3) at this tree against session 51's final tree (9fcb3f3,
# .device/ab_base), alternated: a warm-up (batch parts, not read), then base / new / new / base.
# Changes since base: the batch text check by Arrow, new streams' rows not zeroed where they lie, the batch runner's
# own calls without Futures, serving processes' GC gen0 threshold 20,000 (700 before).
# Predicted: batch short +5-15% and long +5-15% (call 2: +7-23% / +11-17% without the GC change); engine 1,024
# streams and service at saturation +1-4% (GC pauses were 2.7% / 3.4% of an engine process's time in call 3),
# engine 64 streams within noise (+-5%).
set -u
source bench/device_env.sh
B=.device/ab_base
ln -sfn "$(pwd)/streamret/assets" $B/streamret/assets
for x in .device .whl .tcache; do ln -sfn "$(pwd)/$x" $B/$x; done
T0=$SECONDS; RUNS=""; ORDER="warm base1 new1 new2 base2"
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
  # an H200: issue 13's kernel lines with fla first (session 51's call5.sh, its second part capped), then one pair
  CALL_S=230 bash bench/results/2026-12-07-s51/call5.sh; ORDER="base1 new1"
fi
for r in $ORDER; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  if [ ${r:0:4} = base ]; then dir=$B; else dir=.; fi
  if [ $r = warm ]; then parts="--parts packed,batch --packed-seconds 0.3"; lim=90; else parts="--packed-seconds 1 --front-procs 6"; lim=150; fi
  (cd $dir && source bench/device_env.sh > /dev/null && timeout -s KILL $lim python3 bench/e2e.py \
    --text .device/text/man.txt.gz --engine-procs auto --short-docs 8000 $parts --out $d > $d/log.txt 2>&1)
  echo "$r rc $? $((SECONDS-t0)) s"; grep -A12 "Traceback" $d/log.txt | head -12
  RUNS="$RUNS $r"
done
source bench/device_env.sh > /dev/null  # (the kernels' link back to this tree)
python3 bench/e2e_brief.py $(for r in $RUNS; do [ $r = warm ] || echo $OUT/$r; done)
grep -m1 "model name" /proc/cpuinfo
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
