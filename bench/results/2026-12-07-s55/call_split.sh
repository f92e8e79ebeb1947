#!/usr/bin/env bash
# Session 55 (any card; carry [".whl", ".device/text", ".device/old", ".device/ab_base"]; about 250 s).
# A/B of WorkItem.split_after (a batch job's temporary stream: a step that completes one of its chunks goes on into
# the next one and may split it, where before a share stopped at the first chunk it completed) against the commit
# before it (.device/ab_base: `git archive` of its streamret, bench, kernels and pyproject.toml, without
# bench/results, bench/RESULTS.md and the model assets, which this script links from this tree).
# bench/e2e.py --parts packed,batch --packed-seconds 0.3: a warm-up run (new, not read), then three pairs,
# base / new / new / base / base / new.
# Why: the batch job's 64 KiB chunks hold about 17 k tokens, so two documents sharing a 32 k step each took 16 k of a
# chunk and, in the next step, the 1 k left; a document alone took one chunk a step (session 54: 1.3 streams and
# 23.8 k tokens a step, 269 steps for 6.4 M tokens). On the VM (long_docs_host.py, 2 documents of 800 KB, the real
# engine with the model slept): 16 steps of 24.5 k tokens -> 12-13 of 30.1-32.6 k.
# Predicted: batch long +8-20% (steps of about 30 k tokens, fewer steps, each document through in fewer of them);
# batch short within +-5% (one chunk a document: nothing to go on into).
# Rule: the change stays unless batch long reads lower in two of the three pairs.
set -u
source bench/device_env.sh
B=.device/ab_base
ln -sfn "$(pwd)/streamret/assets" $B/streamret/assets
for x in .device .whl .tcache; do ln -sfn "$(pwd)/$x" $B/$x; done
T0=$SECONDS; RUNS=""
for r in warm base1 new1 new2 base2 base3 new3; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  if [ ${r:0:4} = base ]; then dir=$B; else dir=.; fi
  (cd $dir && source bench/device_env.sh > /dev/null && timeout -s KILL 100 python3 bench/e2e.py \
    --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,batch --engine-procs auto --short-docs 8000 \
    --out $d > $d/log.txt 2>&1)
  echo "$r rc $? $((SECONDS-t0)) s"; grep -A12 "Traceback" $d/log.txt | head -12
  grep "^batch_" $d/log.txt | cut -c1-110
  python3 -c "
import json, sys
p = json.load(open(sys.argv[1]))['parts']
for k in ('batch_long', 'batch_short'):
    t = p[k]['timeline']; print('   ', k, 'steps', p[k].get('steps'), 'tokens/step', p[k].get('tokens_per_step'),
          'streams/step', p[k].get('streams_per_step'), 'idle ms/step', p[k].get('loop_parts_ms_per_step', {}).get('idle'),
          'first applied', t.get('first_applied_ms'), 'last applied', t.get('last_applied_ms'))" $d/e2e.json
  RUNS="$RUNS $r"
done
source bench/device_env.sh > /dev/null  # (the kernels' link back to this tree)
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
