# Sourced by call1b.sh and call1c.sh (argument: the tests' cap in seconds): the device's environment, the Triton
# cache, then the GPU tests of session 33's device path (the runner's close embeddings; correctness before speed).
# Sets T0, the call's start.
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL "$1" python3 -m pytest -q -x tests/test_step_runs.py tests/test_engine_gpu.py \
  tests/gpu/test_device_wait_gpu.py tests/test_tokenize_stage.py -k "cuda or gpu or step_runs or gpu_settings" > $OUT/pytest.txt 2>&1
echo "pytest rc $? $((SECONDS-T0)) s"; tail -6 $OUT/pytest.txt
