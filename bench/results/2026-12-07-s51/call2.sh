#!/usr/bin/env bash
# Session 51, call 2 (asked for nvidia-h200; whichever card comes). Carry [".whl", ".device/text"].
# On an H200: session 48's call1.sh (issue 13's kernel lines with fla beside ours: never read on an H200 with the
#   bf16 split off; its header has the prediction).
# On an H100: session 32's draining-cap A/B (bench/results/2026-12-05-h200-s32/next_call2.sh: draining_step_chunks
#   2 against off, engine and service parts, off / on / on / off), after one short warm-up run that fills the
#   Triton cache for the default model (the A/B's first run would otherwise pay the compiles).
#   Predicted (lowered from session 32's +8-25% at 64 streams: session 49's real-engine CPU loop on real text read
#   +3.4%, +3.3%, -3.0%): engine at 64 streams +0-10%; 1,024 streams and the service within the spread (+-8%).
#   Its rule: make 2 the GPU's default if 64 streams reads >= 8% higher in both pairs and no part reads lower
#   beyond 5% in both pairs.
set -u
T0=$SECONDS
source bench/device_env.sh
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
  bash bench/results/2026-12-07-s48/call1.sh
  exit
fi
d=$OUT/warmup; mkdir -p $d
timeout -s KILL 70 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.2 --parts packed,engine \
  --streams 64 --tokens 2e6 --engine-procs auto --out $d > $d/log.txt 2>&1
echo "warmup rc $? $((SECONDS-T0)) s"
RUNS=""
for r in off1 on1 on2 off2; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  extra=""; [ ${r:0:2} = on ] && extra="--draining-step-chunks 2"
  timeout -s KILL 105 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 \
    --parts packed,engine,service --engine-procs auto --front-procs 6 $extra --out $d > $d/log.txt 2>&1
  echo "$r rc $? $((SECONDS-t0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
  RUNS="$RUNS $r"
done
python3 bench/e2e_brief.py $(for r in $RUNS; do echo $OUT/$r; done)
grep -m1 "model name" /proc/cpuinfo
tar czf $OUT/all.tgz -C $OUT warmup $RUNS && (cd $OUT && rm -rf warmup $RUNS)
echo "total $((SECONDS-T0)) s"
