#!/usr/bin/env bash
# Session 10 call A: GPU tests, then bench/model.py (check, model, default, graph, profile), then the Triton cache.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=/tmp/tc; mkdir -p /tmp/tc
R=/tmp/res; mkdir -p $R
pack(){ tar czf $OUT/res.tgz -C $R . ; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv > $R/gpu.txt
git log -1 --format=%H > $R/tree.txt 2>/dev/null
t0=$SECONDS
timeout -s KILL 170 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_kernels_gpu.py tests/gpu/test_fused_model_gpu.py -k "not recurrent_step" > $R/gpu_tests.txt 2>&1
echo "tests rc $? $((SECONDS-t0)) s"; tail -3 $R/gpu_tests.txt; pack
t0=$SECONDS
timeout -s KILL 320 python3 bench/model.py --out $R --sections check,model,default,graph,profile > $R/model_log.txt 2>&1
echo "model rc $? $((SECONDS-t0)) s"; pack
t0=$SECONDS
tar -C /tmp -cf - tc | xz -T12 -6 | split -b 15m - $OUT/tc.tar.xz.part
echo "cache $((SECONDS-t0)) s"; ls -la $OUT
grep -v "^ " $R/model_log.txt | tail -22
