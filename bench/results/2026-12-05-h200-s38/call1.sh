#!/usr/bin/env bash
# Session 38, first call (the device was lent late in the session). 1. The GPU tests of what this session changed
# and of the device path (the graphs at a finer token step: new; the graphed forward, capture at start, the runner's
# steps). Predicted: all pass. 2. next_call5.sh: graph_token_step 1024 against 4096 (prediction and rule in its
# header). Carry .whl, .device/text, .device/old.
set -u
T0=$SECONDS
[ -f .device/old/tcache.tgz ] && tar xzf .device/old/tcache.tgz
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 170 python3 -m pytest -q -x tests/gpu/test_fused_model_gpu.py \
  tests/test_step_runs.py tests/test_engine_gpu.py tests/gpu/test_device_wait_gpu.py tests/test_graph_buckets.py \
  -k "graph or token_step or clear or captured or alternating or cuda or gpu or step_runs or bucket" > $OUT/pytest.txt 2>&1
echo "pytest rc $? $((SECONDS-T0)) s"; tail -4 $OUT/pytest.txt
bash bench/results/2026-12-05-h200-s38/next_call5.sh
echo "call total $((SECONDS-T0)) s"
