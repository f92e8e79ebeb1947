#!/usr/bin/env bash
# Session 57, for the last 300 s of device time (any card; carry [".whl", ".device"]; about 150 s): the engine's GPU
# tests (split_after, session 55's change, runs in every store-less engine there: interleaved streams against one-shot
# runs, the step budget, spills, rows reused), the device wait and the fused model's GPU tests, into
# $OUT/gpu_tests.txt; then the Triton cache compiled here into $OUT/tcache.tgz.
set -u
source bench/device_env.sh
timeout -s KILL 170 python3 -m pytest -q -p no:cacheprovider tests/test_engine_gpu.py tests/gpu/test_device_wait_gpu.py \
  tests/gpu/test_fused_model_gpu.py -k "not recurrent_step" > $OUT/gpu_tests.txt 2>&1
tail -15 $OUT/gpu_tests.txt
[ -d .tcache ] && tar czf $OUT/tcache.tgz --exclude='*.ptx' --exclude='*.ttir' --exclude='*.ttgir' \
  --exclude='*.llir' --exclude='*.source' .tcache && du -h $OUT/tcache.tgz
