#!/usr/bin/env bash
# Written in session 38 (no device lent), not run yet. A/B of EngineConfig.graph_token_step (new in session 38, 4096 by
# default): 1024 against 4096, 2 alternating pairs on one machine, engine parts. CUDA graphs pad a step to its token
# bucket (powers of two up to the step, then its multiples): at 64 streams over 9 engines a step held 10.7 k tokens
# (session 37, fast H100 host), run padded to 12,288 at 4,096 and to 11,264 at 1,024; bench/step_fill.py's model of the
# queue (7 streams an engine) reads padding at 30.8% of the device's work at 4,096 and 13.6% at 1,024, at 114 streams
# an engine 6.0% and 1.9%. At 64 streams the engine is bound by a chunk's round trip (window of 4), whose step leg
# holds the device's time for the padded step.
# Predicted: engine 64 streams +3-10%, 1,024 streams 0 to +4%; engine start (321 graphs captured against 123) +1-4 s
# (e2e.json engine_start_seconds). Rule, written before: default 1024 if engine 64 streams reads >= +4% in both pairs
# and 1,024 streams not below -3% in either; else keep 4096 (2048 is the middle ground to try next if 64 streams gains
# but 1,024 loses).
# Carry .device/old/tcache.tgz (or run on a machine a previous call left warm, without it). At most about 300 s.
set -u
T0=$SECONDS
[ -f .device/old/tcache.tgz ] && tar xzf .device/old/tcache.tgz
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
timeout -s KILL 290 python3 bench/e2e_ab.py --pairs 2 --timeout 65 --b "--graph-token-step 1024" \
  --out $OUT/step1024 -- --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,engine \
  --engine-procs auto > $OUT/step1024_log.txt 2>&1
echo "ab rc $? $((SECONDS-T0)) s"; tail -14 $OUT/step1024_log.txt | cut -c1-200
python3 -c "import json, pathlib, sys; [print(p.parent.name, json.loads(p.read_text()).get('engine_start_seconds'), 's engine start') for p in sorted(pathlib.Path(sys.argv[1]).glob('*/e2e.json'))]" $OUT/step1024
tar czf $OUT/all.tgz -C $OUT step1024 && rm -rf $OUT/step1024
echo "total $((SECONDS-T0)) s"
