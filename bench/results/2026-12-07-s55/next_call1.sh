#!/usr/bin/env bash
# Session 55, call 1 (no kind named; carry [".whl", ".device/text", ".device/old"]).
# On an H200: issue 13's whole list (session 53's call1.sh: bench/model.py with its defaults under a 560 s limit).
# On any other card (about 330 s): an A/B of the batch job's sub-batches at once, then the whole e2e list once.
#   A/B: bench/e2e.py --parts packed,batch, a warm-up run (not read), then A / B / B / A; A the default
#   (--max-sub-batches-per-engine 2: 32 long documents on 9 engine processes run as 18, then the other 14 as the
#   first ones end), B 4 (all 32 at once, 3-4 an engine). Why: session 54's long-document timelines read as two
#   waves of documents of about 320 ms each (14-18 documents under way, 1.3 streams a step, each stream one 64 KiB
#   chunk a step) after a 173 ms start, the engines idle 13 ms a step on average (the start and the tail).
#   Predicted: long documents +5-15% (steps of about 3 streams, one wave, a shorter tail), the loop's idle a step
#   lower; short documents within the spread (8,000 rows make about 143 sub-batches, over the 36 the rule starts at
#   once). Session 36 read -9% / +6% with 12 engine processes on an H200 (2-3 documents an engine).
#   Rule: B becomes the default if long documents read higher in both pairs and short ones not lower in both.
#   Then the whole list once at this tree's defaults (the 3 ms join wait's first whole-list reading).
set -u
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
  bash bench/results/2026-12-07-s53/call1.sh
  exit
fi
source bench/device_env.sh
T0=$SECONDS; RUNS=""
for r in warm a1 b1 b2 a2; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  if [ ${r:0:1} = b ]; then m=4; else m=2; fi
  timeout -s KILL 120 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,batch \
    --engine-procs auto --short-docs 8000 --max-sub-batches-per-engine $m --out $d > $d/log.txt 2>&1
  echo "$r (max $m) rc $? $((SECONDS-t0)) s"; grep -A12 "Traceback" $d/log.txt | head -12
  grep "^batch_" $d/log.txt | cut -c1-110
  python3 -c "
import json, sys
p = json.load(open(sys.argv[1]))['parts']
for k in ('batch_long', 'batch_short'):
    t = p[k]['timeline']; print('   ', k, 'streams/step', p[k].get('streams_per_step'), 'idle ms/step',
          p[k].get('loop_parts_ms_per_step', {}).get('idle'), 'first applied', t.get('first_applied_ms'),
          'last applied', t.get('last_applied_ms'), 'seconds', round(p[k]['seconds'], 3))
    print('      ', ' '.join(f'{c}/{d}' for c, d in zip(t['chunks'], t['documents'])))" $d/e2e.json
  RUNS="$RUNS $r"
done
d=$OUT/whole; mkdir -p $d; t0=$SECONDS
timeout -s KILL 150 python3 bench/e2e.py --text .device/text/man.txt.gz --engine-procs auto --front-procs 6 \
  --short-docs 8000 --packed-seconds 1 --out $d > $d/log.txt 2>&1
echo "whole rc $? $((SECONDS-t0)) s"
python3 bench/e2e_brief.py $d
RUNS="$RUNS whole"
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
