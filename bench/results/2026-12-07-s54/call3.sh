#!/usr/bin/env bash
# Session 54, call 3 (any card; carry [".whl", ".device/text", ".device/old", ".device/ab_base"]; about 200 s).
# A/B of this session's two batch changes against the tree before them (.device/ab_base: the commit before the
# first, without model assets, linked here): the corpus read with ParquetFile.iter_batches in batches of about 1 MiB
# of text, and parts encoded as their rows come back (a row group each 1,024 rows, on a thread of its own).
# bench/e2e.py --parts packed,batch, a warm-up run (new, not read), then base / new / new / base.
# Predicted (the VM: the job's own work to the hand-over 92-93 -> 79-84 ms for short documents, 60-66 -> 55-60 for
# long; batch_tail.py here, engines answering over 800 ms: the tail after the last answer 101-133 -> 27-51 ms, the
# job 1,000-1,048 -> 919-952 ms): the first documents handed to the engines 5-15 ms sooner; the short documents'
# tail (last returned -> the job's end) 40-80 ms shorter; batch short +5-10%, long +1-4%.
# Rule: the changes stay unless both parts read lower in both pairs.
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
  python3 -c "
import json, sys
p = json.load(open(sys.argv[1]))['parts']
for k in ('batch_long', 'batch_short'):
    t = p[k]['timeline']; print('   ', k, 'handed', t.get('first_handed_ms'), 'first applied', t.get('first_applied_ms'),
                                 'last applied', t.get('last_applied_ms'), 'last returned', t.get('last_returned_ms'),
                                 'seconds', round(p[k]['seconds'], 3))" $d/e2e.json
  RUNS="$RUNS $r"
done
source bench/device_env.sh > /dev/null  # (the kernels' link back to this tree)
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
