#!/usr/bin/env bash
# For the next session, third (written in session 37, not run yet; next_call1.sh and next_call2.sh, issue 13, go
# first; on an H100, whose figures do not answer issue 13, this one first). Two A/Bs of issue 14's
# EngineConfig.step_fill (new in session 37, "off" by default), each 2 alternating pairs on one machine, engine parts
# (the service's would not fit the call), every run recording the host's speed (versions.python_core_ms: session 37
# read the engine at 0.398 and 0.577 of packed on two H100 hosts). A stream's fair share of a step stops at a chunk
# boundary once it completes a chunk; at 1,024 streams a step held 24.7 k tokens of 32,768 on average (session 37).
# 1. "padding": a step takes its streams' further queued tokens into its graph bucket's padding (free device work).
#    Rule, written before: default "padding" if engine 1,024 streams reads >= +3% in both pairs and 64 streams not
#    below -5% in both. Predicted: 1,024 streams +3-8%, 64 streams within +-5% (its steps take every queued token).
# 2. "budget": up to max_step_tokens (bigger steps: more tokens for each step's host work and launch, longer steps).
#    Rule: default "budget" instead if engine 1,024 streams reads >= +5% in both pairs, more than "padding" gained
#    on average, and 64 streams not below -5% in both. Predicted: 1,024 streams +5-20% (bench/step_fill.py's model:
#    +34% tokens a step, which the device and the acks' round trip will not all turn into tokens/s), 64 streams
#    within +-5%.
# Carry .device/old/tcache.tgz (or run on the machine next_call2.sh leaves warm, without it). At most about 560 s.
set -u
T0=$SECONDS
[ -f .device/old/tcache.tgz ] && tar xzf .device/old/tcache.tgz
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
for fill in padding budget; do
  timeout -s KILL 270 python3 bench/e2e_ab.py --pairs 2 --timeout 65 --b "--step-fill $fill" \
    --out $OUT/$fill -- --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,engine \
    --engine-procs auto > $OUT/${fill}_log.txt 2>&1
  echo "$fill ab rc $? $((SECONDS-T0)) s"; tail -14 $OUT/${fill}_log.txt | cut -c1-200
done
tar czf $OUT/all.tgz -C $OUT padding budget && rm -rf $OUT/padding $OUT/budget
echo "total $((SECONDS-T0)) s"
