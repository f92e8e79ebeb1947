#!/usr/bin/env bash
# Session 12 call 1: GPU tests (the output pass changed shape), the 1.3B model rows (3 rounds), the K256 span
# variants with h0 (k5.py), the Triton cache, then e2e engine,service with --step-samples 1 (issue 14).
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=/tmp/tc; mkdir -p /tmp/tc
if [ -f .tcache/tc.tar.xz ] && [ ! -f /tmp/tc/.unpacked ]; then tar xJf .tcache/tc.tar.xz -C /tmp && touch /tmp/tc/.unpacked; fi
R=/tmp/res1; mkdir -p $R
pack(){ tar czf $OUT/res1.tgz -C $R . ; }
T0=$SECONDS
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv > $R/gpu.txt
ls -la /usr/bin/nvidia-cuda-mps-control > $R/mps.txt 2>&1
t0=$SECONDS
timeout -s KILL 200 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_kernels_gpu.py tests/gpu/test_fused_model_gpu.py tests/gpu/test_device_wait_gpu.py -k "not recurrent_step" > $R/gpu_tests.txt 2>&1
echo "tests rc $? $((SECONDS-t0)) s"; tail -3 $R/gpu_tests.txt; pack
t0=$SECONDS
mkdir -p $R/m; timeout -s KILL 110 python3 bench/model.py --out $R/m --sections model --presets fla-1.3b --rounds 3 > $R/m_log.txt 2>&1
echo "model rc $? $((SECONDS-t0)) s"; pack
t0=$SECONDS
OUT=$R timeout -s KILL 120 python3 .device/k5.py > $R/k5_log.txt 2>&1; echo "k5 rc $? $((SECONDS-t0)) s"; pack
t0=$SECONDS
tar -C /tmp -cf - tc | xz -T12 -6 | split -b 15m - $OUT/tc.tar.xz.part
echo "cache $((SECONDS-t0)) s"
left=$((585-(SECONDS-T0))); t0=$SECONDS; d=$R/e2e; mkdir -p $d
[ $left -gt 90 ] && { timeout -s KILL $left python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 1 --engine-procs auto --front-procs 6 --tokens 1e7 --parts engine,service --step-samples 1 --out $d > $d/log.txt 2>&1; echo "e2e rc $? $((SECONDS-t0)) s"; pack; }
cat $R/mps.txt
grep -v "^ " $R/m_log.txt | tail -10
cat $R/k5_log.txt | grep -v "^ " | tail -10
[ -f $d/log.txt ] && grep -v "^   " $d/log.txt | tail -30
