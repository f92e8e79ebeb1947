#!/usr/bin/env bash
# For the next session's first call (written in session 37, not run yet). Session 37 measured one engine at 2.5 GiB
# of an H100 once its graphs are captured (6.8-7.0 before the segment-slot fix), so `engine_procs("auto")`'s 8 GiB
# allowance (9 engines on an H100) may be lowered to give 12 there, as on the H200. This decides it:
# an A/B of 9 vs 12 engines (engine and service parts, 2 alternating pairs), the GPU's used memory sampled each
# second throughout (its peak / 12 bounds one engine's steady-state need, steps included).
# Rule, written before the run: lower ENGINE_DEVICE_BYTES to 4 GiB (12 on an H100) if no run fails, the peak used
# memory with 12 engines is under 60 GiB, and 12 reads no lower than 9 beyond 5% on any part in both pairs.
# Predicted: peak 30-40 GiB with 12; engine 1,024 streams +5-20% with 12 (the H200's session-4 figure), 64 streams
# within +-10%, service at saturation within +-10% (its front processes share the 16 cores).
# Carry .device/old/tcache.tgz (session 37's, packed). At most about 560 s.
set -u
T0=$SECONDS
[ -f .device/old/tcache.tgz ] && tar xzf .device/old/tcache.tgz
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
(while true; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits >> $OUT/gpu_used_mib.txt; sleep 1; done) &
SAMPLER=$!
timeout -s KILL 520 python3 bench/e2e_ab.py --pairs 2 --timeout 120 --a "--engine-procs 9" --b "--engine-procs 12" \
  --out $OUT/ab -- --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,engine,service --front-procs 6 \
  > $OUT/ab_log.txt 2>&1
echo "ab rc $? $((SECONDS-T0)) s"
kill $SAMPLER
echo "peak GPU memory used: $(sort -n $OUT/gpu_used_mib.txt | tail -1) MiB"
tail -30 $OUT/ab_log.txt | cut -c1-200
tar czf $OUT/tcache.tgz .tcache; echo "total $((SECONDS-T0)) s"
