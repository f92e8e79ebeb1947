#!/usr/bin/env bash
# Written in session 33 (no GPU lent; not run yet), for right after next_call1.sh on the same warm machine (its
# Triton cache unpacked into .tcache first). Session 33 changed the model runner's device path: `ModelRunner._pool`
# now also returns each run's stream embedding after the run (the pool after the step less the stream's later runs'
# sums; StepOutput.close_embeddings), which the kept-segment rule ranks against, and the booking ranks a stream that
# overflows several times in a step on its own. On the CPU every test of it passes; on a GPU it has not run.
# Predicted: all pass (test_step_runs' cuda case checks every run's close embedding against the pool summed from the
# hidden states; test_engine_gpu's interleaved streams against one-shot runs, with and without CUDA graphs), in
# under 200 s with the default model's kernels compiled by call 1 (random:tiny's compile here: 20-60 s).
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 240 python3 -m pytest -q -x tests/test_step_runs.py tests/test_engine_gpu.py \
  tests/gpu/test_device_wait_gpu.py tests/test_tokenize_stage.py -k "cuda or gpu or step_runs or gpu_settings" 2>&1 | tail -15
echo "pytest rc ${PIPESTATUS[0]} $((SECONDS-T0)) s"
tar czf $OUT/tcache.tgz .tcache; echo "total $((SECONDS-T0)) s"
