#!/usr/bin/env bash
# Session 34: run as written in session 33 (copied unchanged below this line).
# Session 33, first call (a machine came late in the session): session 32's next_call1.sh part 1 (the whole list
# on this tree, 250 s cap, cold Triton cache) and then next_call1b.sh (the GPU tests of session 33's device path:
# the runner's close embeddings that the kept-segment rule ranks against), with the warm cache. The sub-batch A/B of
# next_call1.sh part 2 is the next call if time is left.
# Predicted, whole list (as session 31 call 4 on a slow host, about 1.5x on a fast one): engine 64 streams 6.5-8 M,
# applied -> answered p50 0.5-1.0 ms (the ack thread); 1,024 streams 9.4-11.2 M; service 6-7.5 M; half-load p99
# 38-56 ms; the service parts' loop parts now add up to their wall time a step (idle no longer holds the load's
# start). Session 33's kept rule adds about 5-10% to the step threads' CPU a token (0.42-0.68 -> 0.45-0.73 us).
# GPU tests: all pass.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
d=$OUT/whole; mkdir -p $d
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 250 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 1 --engine-procs auto --front-procs 6 --short-docs 8000 --out $d > $d/log.txt 2>&1
echo "whole rc $? $((SECONDS-T0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
t1=$SECONDS
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 200 python3 -m pytest -q -x tests/test_step_runs.py tests/test_engine_gpu.py \
  tests/gpu/test_device_wait_gpu.py tests/test_tokenize_stage.py -k "cuda or gpu or step_runs or gpu_settings" > $OUT/pytest.txt 2>&1
echo "pytest rc $? $((SECONDS-t1)) s"; tail -6 $OUT/pytest.txt
PYTHONPATH=$PWD:$PYTHONPATH python3 bench/e2e_brief.py $OUT/whole
sed -n '/^part /,/^$/p' $OUT/whole/log.txt | cut -c1-200
grep -A2 "^batch_long: chunks applied" $OUT/whole/log.txt
grep -m1 "model name" /proc/cpuinfo
tar czf $OUT/all.tgz -C $OUT whole && rm -rf $OUT/whole
tar czf $OUT/tcache.tgz .tcache; echo "total $((SECONDS-T0)) s"
