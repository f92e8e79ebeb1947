#!/usr/bin/env bash
# Session 34 (not run: no device machine came): what fits the last ~300 s of device time after failed starts. The
# GPU tests of session 33's device path first (correctness before speed: the runner's close embeddings on the GPU),
# then the engine parts alone (packed reference, 64 and 1,024 streams) under a 100 s cap. Predicted: tests all pass;
# engine 64 streams 6.5-8 M, 1,024 streams 9.4-11.2 M on a slow host (about 1.5x on a fast one), as in session 33's
# call1.sh header.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 170 python3 -m pytest -q -x tests/test_step_runs.py tests/test_engine_gpu.py \
  tests/gpu/test_device_wait_gpu.py tests/test_tokenize_stage.py -k "cuda or gpu or step_runs or gpu_settings" > $OUT/pytest.txt 2>&1
echo "pytest rc $? $((SECONDS-T0)) s"; tail -6 $OUT/pytest.txt
t1=$SECONDS
d=$OUT/engine; mkdir -p $d
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 100 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,engine --engine-procs auto --out $d > $d/log.txt 2>&1
echo "engine rc $? $((SECONDS-t1)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
PYTHONPATH=$PWD:$PYTHONPATH python3 bench/e2e_brief.py $OUT/engine
grep -m1 "model name" /proc/cpuinfo
echo "total $((SECONDS-T0)) s"
