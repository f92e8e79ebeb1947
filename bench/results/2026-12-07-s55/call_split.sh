#!/usr/bin/env bash
# Session 55 (any card; carry [".whl", ".device/text", ".device/old", ".device/ab_base"]; about 260 s).
# A/B of WorkItem.split_after (where no record will want a stream's state between chunks, here every engine of the
# e2e parts, which keep none, and a batch job's temporaries anywhere: a step that completes a chunk goes on into the
# next one and may split it, where before a share stopped at the first chunk it completed; a read that needs a chunk
# boundary ends the stream's work at the next one) against the commit before it (.device/ab_base: `git archive` of
# its streamret, bench, kernels and pyproject.toml, without bench/results, bench/RESULTS.md and the model assets,
# which this script links from this tree). bench/e2e.py --parts packed,engine,batch --packed-seconds 0.3: a warm-up
# run (small batch parts, new, not read), then base / new / new / base.
# Why: the batch job's 64 KiB chunks hold about 17 k tokens, so two documents sharing a 32 k step each took 16 k of a
# chunk and, in the next step, the 1 k left, and a document alone took one chunk a step (session 54: 1.3 streams and
# 23.8 k tokens a step, 269 steps for 6.4 M tokens); at 1,024 streams a share of about 290-470 tokens stopped at the
# end of each 500-token chunk (session 54: 23.1 k tokens a step of the 32.8 k budget, 69 streams). On the VM
# (long_docs_host.py, 2 documents of 800 KB, the real engine with the model slept): 16 steps of 24.5 k tokens ->
# 12-13 of 30.1-32.6 k.
# Predicted: engine at 1,024 streams +10-30% (tokens a step 23 k -> 30 k and more at about the same host work a
# step, up to the device's bound); batch long +8-20%; engine at 64 streams and batch short within +-5% (whole queues
# or one chunk a document: nothing to go on into).
# Rule: the change stays unless engine 1,024 or batch long reads lower in both pairs, or another part more than 5%
# lower in both.
# SHORT_DOCS (default 8000) and PACKED_S (0.3) make the runs shorter where device time is short.
set -u
SHORT_DOCS=${SHORT_DOCS:-8000}; PACKED_S=${PACKED_S:-0.3}
source bench/device_env.sh
B=.device/ab_base
ln -sfn "$(pwd)/streamret/assets" $B/streamret/assets
for x in .device .whl .tcache; do ln -sfn "$(pwd)/$x" $B/$x; done
T0=$SECONDS; RUNS=""
for r in warm base1 new1 new2 base2; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  if [ ${r:0:4} = base ]; then dir=$B; else dir=.; fi
  if [ $r = warm ]; then parts="--parts batch --long-docs 4 --short-docs 500"  # (a fresh machine's first run reads cold)
  else parts="--parts packed,engine,batch --short-docs $SHORT_DOCS"; fi
  (cd $dir && source bench/device_env.sh > /dev/null && timeout -s KILL 110 python3 bench/e2e.py \
    --text .device/text/man.txt.gz --packed-seconds $PACKED_S $parts --engine-procs auto --out $d > $d/log.txt 2>&1)
  echo "$r rc $? $((SECONDS-t0)) s"; grep -A12 "Traceback" $d/log.txt | head -12
  grep "^batch_\|^engine_" $d/log.txt | cut -c1-110
  python3 -c "
import json, sys
p = json.load(open(sys.argv[1]))['parts']
for k in ('engine_64', 'engine_1024', 'batch_long', 'batch_short'):
    if k not in p: continue
    t = p[k].get('timeline', {}); print('   ', k, 'steps', p[k].get('steps'), 'tokens/step', p[k].get('tokens_per_step'),
          'streams/step', p[k].get('streams_per_step'), 'idle ms/step', p[k].get('loop_parts_ms_per_step', {}).get('idle'),
          'first applied', t.get('first_applied_ms'), 'last applied', t.get('last_applied_ms'))" $d/e2e.json
  RUNS="$RUNS $r"
done
source bench/device_env.sh > /dev/null  # (the kernels' link back to this tree)
python3 bench/e2e_brief.py $OUT/base1 $OUT/new1 $OUT/new2 $OUT/base2
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
