#!/usr/bin/env bash
# Session 31 call 1 (issue 14). Three things in one call, on one machine (only comparisons within it are effects):
# 1. Sleeping device waits at saturation, now that the service part is bound by the host's CPU (session 30 call 5:
#    14.9 of 16 cores busy, the step threads spinning 2.6 ms of CPU a step in `wait`, about 1.8 cores; in the batch
#    parts 7-9 ms a step). Sessions 11, 21 and 23 read no gain from "sleep" on slower hosts whose CPU went elsewhere.
#    Predicted with --device-wait sleep: service at saturation +3-12%, its p99 within the spread; half-load p99
#    within +-5 ms; engine 64 streams 0 to -8% (a wake-up on every round trip), 1,024 within the spread; batch 0-5%.
# 2. The tokenize call size, 128 KiB against 1 MiB (session 28's open question at the 32,768-token budget): in
#    the long documents' part a wave of 4 x 64 KiB chunks a document goes to one tokenize call of 512-768 KiB
#    (35 ms of cutting before an engine's first step), and its queued-to-applied p50 is 51 ms. Predicted with 128
#    KiB: batch long +3-8%, engine at 1,024 streams 0 to +15% (3e7 tokens), 64 streams and short documents within
#    the spread, service 0 to +10%.
# 3. The `random:small` token path (issue 14's "random:small >= 70%"), not measured in a run of its own since
#    session 4: packed and engine parts. Predicted >= 0.70 of its packed forward at both widths (session 4 read
#    1.29 / 1.54 of an eager reference).
# Runs: base / sleep / b128 alternated twice (packed, engine, service and batch parts, defaults otherwise), then
# the random:small run if time is left.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
RUNS=""
for r in base1 sleep1 b128a base2 sleep2 b128b; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  extra=""; [ ${r:0:5} = sleep ] && extra="--device-wait sleep"; [ ${r:0:4} = b128 ] && extra="--tokenize-batch-kb 128"
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 85 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,engine,service,batch --engine-procs auto --front-procs 6 --short-docs 8000 $extra --out $d > $d/log.txt 2>&1
  echo "$r rc $? $((SECONDS-t0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
  RUNS="$RUNS $r"
done
if [ $((SECONDS-T0)) -lt 480 ]; then r=small; d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL $((570-SECONDS+T0)) python3 bench/e2e.py --model random:small --text .device/text/man.txt.gz --packed-seconds 0.5 --parts packed,engine --engine-procs auto --out $d > $d/log.txt 2>&1
  echo "$r rc $? $((SECONDS-t0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12; sed -n '/^part /,/^$/p' $d/log.txt | cut -c1-160
  RUNS="$RUNS $r"
fi
PYTHONPATH=$PWD:$PYTHONPATH python3 bench/e2e_brief.py $(for r in $RUNS; do echo $OUT/$r; done)
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
