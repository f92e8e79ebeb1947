#!/usr/bin/env bash
# Session 11 call 1: GPU tests, bench/model.py kernels+parity, then the 1.3B model rows (5 rounds), then the Triton cache.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=/tmp/tc; mkdir -p /tmp/tc
if [ -f .tcache/tc.tar.xz ] && [ ! -f /tmp/tc/.unpacked ]; then tar xJf .tcache/tc.tar.xz -C /tmp && touch /tmp/tc/.unpacked; fi
R=/tmp/res1; mkdir -p $R
pack(){ tar czf $OUT/res1.tgz -C $R . ; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv > $R/gpu.txt
t0=$SECONDS
timeout -s KILL 170 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_kernels_gpu.py tests/gpu/test_fused_model_gpu.py -k "not recurrent_step" > $R/gpu_tests.txt 2>&1
echo "tests rc $? $((SECONDS-t0)) s"; tail -3 $R/gpu_tests.txt; pack
t0=$SECONDS
mkdir -p $R/kp; timeout -s KILL 230 python3 bench/model.py --out $R/kp --sections kernels,parity > $R/kp_log.txt 2>&1
echo "kernels+parity rc $? $((SECONDS-t0)) s"; pack
t0=$SECONDS
mkdir -p $R/m; timeout -s KILL 130 python3 bench/model.py --out $R/m --sections model --presets fla-1.3b --rounds 5 > $R/m_log.txt 2>&1
echo "model rc $? $((SECONDS-t0)) s"; pack
t0=$SECONDS
tar -C /tmp -cf - tc | xz -T12 -6 | split -b 15m - $OUT/tc.tar.xz.part
echo "cache $((SECONDS-t0)) s"; ls -la $OUT
grep -v "^ " $R/kp_log.txt | tail -25
grep -v "^ " $R/m_log.txt | tail -12
