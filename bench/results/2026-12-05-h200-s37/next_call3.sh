#!/usr/bin/env bash
# For the next session, third (written in session 37, not run yet; next_call1.sh and next_call2.sh, issue 13, go
# first). Two A/Bs of issue 14, each 2 alternating pairs on one machine, every run recording the host's speed
# (versions.python_core_ms: session 37 read the engine at 0.398 and 0.577 of packed on two H100 hosts):
# 1. EngineConfig.fill_step_padding (new in session 37, off): a step takes queued tokens into its graph bucket's
#    padding (whole chunks, or the rest of the one chunk it splits), free device work. At 1,024 streams a step held
#    24.7 k tokens on average (session 37), padded to the next 4,096: about 2 k tokens of padding a step.
#    Engine parts only (the service's would not fit the call). Rule, written before: on by default if engine
#    1,024 streams reads >= +3% in both pairs and 64 streams not below -5% in both. Predicted: 1,024 streams +3-8%
#    (more tokens a step at the same device time), 64 streams within +-5% (its steps take every queued token).
# 2. The tokenize join (`--tokenize-join-kb 0` against the default 32), engine part only: on the faster host a
#    64-stream chunk waited 4.1 ms (p50) for tokenizing out of a 12.0 ms round trip; the join was measured worth
#    +14-24% on the H200 host of session 26, when a step's host work was about twice as long.
#    Rule, written before: default 0 if engine 64 streams reads >= +5% in both pairs and 1,024 streams not below
#    -5% in both. Predicted: 64 streams -5% to +10%, 1,024 within +-5%.
# Carry .device/old/tcache.tgz (or run on the machine next_call2.sh leaves warm, without it). At most about 560 s.
set -u
T0=$SECONDS
[ -f .device/old/tcache.tgz ] && tar xzf .device/old/tcache.tgz
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
timeout -s KILL 280 python3 bench/e2e_ab.py --pairs 2 --timeout 65 --b "--fill-step-padding" \
  --out $OUT/fill -- --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,engine \
  --engine-procs auto > $OUT/fill_log.txt 2>&1
echo "fill ab rc $? $((SECONDS-T0)) s"; tail -16 $OUT/fill_log.txt | cut -c1-200
timeout -s KILL $((560 - (SECONDS - T0))) python3 bench/e2e_ab.py --pairs 2 --timeout 65 --b "--tokenize-join-kb 0" \
  --out $OUT/join -- --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,engine --engine-procs auto \
  > $OUT/join_log.txt 2>&1
echo "join ab rc $? $((SECONDS-T0)) s"; tail -12 $OUT/join_log.txt | cut -c1-200
tar czf $OUT/all.tgz -C $OUT fill join && rm -rf $OUT/fill $OUT/join
echo "total $((SECONDS-T0)) s"
