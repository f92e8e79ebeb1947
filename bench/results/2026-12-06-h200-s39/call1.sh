#!/usr/bin/env bash
# Session 39, first call: session 38's call1.sh (the GPU tests of its changes, then next_call5.sh: graph_token_step
# 1024 against 4096, prediction and rule in that script's header), with the pytest limit raised to 240 s because
# this checkout had no Triton cache to carry (a cold cache compiles every kernel first), and the cache packed into
# $OUT/tcache.tgz for the next calls (carried as .device/old/tcache.tgz). Predicted: every selected test passes.
# Also the GPU test of pool_runs (a step's runs pooled in two launches, session 39).
set -u
T0=$SECONDS
[ -f .device/old/tcache.tgz ] && tar xzf .device/old/tcache.tgz
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 240 python3 -m pytest -q -x tests/gpu/test_fused_model_gpu.py \
  tests/test_step_runs.py tests/test_engine_gpu.py tests/gpu/test_device_wait_gpu.py tests/test_graph_buckets.py \
  -k "graph or token_step or clear or captured or alternating or cuda or gpu or step_runs or bucket" > $OUT/pytest.txt 2>&1
echo "pytest rc $? $((SECONDS-T0)) s"; tail -4 $OUT/pytest.txt
# the runs' pooling in two launches (pool_runs, new in session 39): its kernel test, the runner's steps against the
# host's booking (test_step_runs above), the engine's GPU tests (above). Predicted: pass.
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 60 python3 -m pytest -q tests/gpu/test_kernels_gpu.py -k "pool_runs or segment_sum" 2>&1 | tail -2
bash bench/results/2026-12-05-h200-s38/next_call5.sh
tar czf $OUT/tcache.tgz .tcache; ls -la $OUT/tcache.tgz
echo "call total $((SECONDS-T0)) s"
