#!/usr/bin/env bash
# For the next session, third (written in session 37, not run yet; next_call1.sh and next_call2.sh, issue 13, go
# first; session 37's 9-vs-12-engine question, which a first draft of this script asked, was answered by its calls
# 5 and 6: 12 fit, no faster).
# 1. The whole e2e list on this tree, now recording the host's speed (versions.python_core_ms): session 37 read
#    engine 64 streams 0.398 and 0.577 of packed on two H100 hosts whose engine processes spent 0.62 and 0.30 us
#    of step-thread CPU a token. Predicted: as call2 or call6 of session 37 according to the host.
# 2. An A/B of the tokenize join (`--tokenize-join-kb 0` against the default 32), engine part only, 2 pairs: on the
#    faster host a 64-stream chunk waited 4.1 ms (p50) for tokenizing out of a 12.0 ms round trip; the join was
#    measured worth +14-24% on the H200 host of session 26, when a step's host work was about twice as long.
#    Rule, written before: default 0 if engine 64 streams reads >= +5% in both pairs and 1,024 streams not below
#    -5% in both. Predicted: 64 streams -5% to +10%, 1,024 within +-5%.
# Carry .device/old/tcache.tgz. At most about 560 s.
set -u
T0=$SECONDS
[ -f .device/old/tcache.tgz ] && tar xzf .device/old/tcache.tgz
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
d=$OUT/whole; mkdir -p $d
timeout -s KILL 170 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 1 --engine-procs auto \
  --front-procs 6 --short-docs 8000 --out $d > $d/log.txt 2>&1
echo "whole rc $? $((SECONDS-T0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
python3 bench/e2e_brief.py $d
timeout -s KILL $((560 - (SECONDS - T0))) python3 bench/e2e_ab.py --pairs 2 --timeout 75 --b "--tokenize-join-kb 0" \
  --out $OUT/ab -- --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,engine --engine-procs auto \
  > $OUT/ab_log.txt 2>&1
echo "ab rc $? $((SECONDS-T0)) s"
tail -20 $OUT/ab_log.txt | cut -c1-200
tar czf $OUT/all.tgz -C $OUT whole ab && rm -rf $OUT/whole $OUT/ab
echo "total $((SECONDS-T0)) s"
