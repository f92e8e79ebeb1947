#!/usr/bin/env bash
# Session 52, call 2 (any card). Carry [".whl", ".device/text", ".device/old", ".device/ab_base"].
# A/B of this session's batch-path changes against session 51's final tree (9fcb3f3, in .device/ab_base without
# its model assets, which are unchanged: linked here): the text column checked with whole-chunk Arrow work, new
# streams' rows not zeroed where they lie, the runner's own calls without Futures. bench/e2e.py --parts packed,batch,
# one warm-up run (new, not read), then base / new / new / base.
# Predicted (the VM: a short document's runner CPU 294-385 -> 188-253 us, a 25 MB part's check 12-30 -> 6-7 ms):
# batch short +3-8%, long +1-3%; the first documents handed to the engines 5-20 ms sooner.
set -u
source bench/device_env.sh
B=.device/ab_base
ln -sfn "$(pwd)/streamret/assets" $B/streamret/assets
for x in .device .whl .tcache; do ln -sfn "$(pwd)/$x" $B/$x; done
T0=$SECONDS; RUNS=""
for r in warm base1 new1 new2 base2; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  if [ ${r:0:4} = base ]; then dir=$B; else dir=.; fi
  (cd $dir && source bench/device_env.sh > /dev/null && timeout -s KILL 120 python3 bench/e2e.py \
    --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,batch --engine-procs auto --short-docs 8000 \
    --out $d > $d/log.txt 2>&1)
  echo "$r rc $? $((SECONDS-t0)) s"; grep -A12 "Traceback" $d/log.txt | head -12
  grep "^batch_" $d/log.txt | cut -c1-110
  grep -o "handed to the engines at [0-9.]* ms" $d/log.txt | tr '\n' ' '; echo
  RUNS="$RUNS $r"
done
source bench/device_env.sh > /dev/null  # (the kernels' link back to this tree)
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
