#!/usr/bin/env bash
# For the next session's first call (written in session 36, not run yet). Session 36's calls all ran on an H100
# (bench/RESULTS.md, "Session 36"); this re-takes both issues' lists on the final tree, whatever card comes:
# 1. GPU tests: session 33's device path (gpu_tests.sh), the CUDA-graph forward (clear and capture again), and the
#    chunk kernels with segment cuts (`-k segment`: session 36 moved their scratch states to slots of their own,
#    N + T / seg_len of them, not N x the segments of the longest; correct on the CPU interpreter, compiled for
#    sm90 here; a new GPU test at the default model's heads, 64 ragged sequences, one long). Then one
#    engine's device memory (engine_memory.py; predicted 5.2-5.8 GiB against 6.8-7.0 before).
# 2. The whole e2e list (sub-batches two an engine again). Predicted on an H100 (9 engines): as session 36's
#    call1 within its A/B spread (engine 64 / 1,024 streams 5.3-7.0 / 7.0-9.5 M, service at saturation 5.0-7.1 M,
#    batch long 7.5-8.4 M, short 4.9-6.3 M); on an H200 (12 engines) as session 31's figures.
# The Triton cache: carry .device/old/tcache.tgz (session 36's, packed; .tcache unpacked is over the carry limit
# beside the tree). Returns tcache.tgz for the calls after this one. At most about 600 s (the caps), about 350 s
# as session 36's calls ran. Then next_call2.sh on the warm machine.
set -u
[ -f .device/old/tcache.tgz ] && tar xzf .device/old/tcache.tgz
source bench/results/2026-12-05-h200-s34/gpu_tests.sh 120
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 60 python3 -m pytest -q tests/gpu/test_fused_model_gpu.py -k "clear or captured_at_start" 2>&1 | tail -3
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 150 python3 -m pytest -q tests/gpu/test_kernels_gpu.py -k segment 2>&1 | tail -3
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 90 python3 bench/results/2026-12-05-h200-s36/engine_memory.py 2>&1 | tail -2
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
t1=$SECONDS; d=$OUT/whole; mkdir -p $d
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 180 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 1 --engine-procs auto --front-procs 6 --short-docs 8000 --out $d > $d/log.txt 2>&1
echo "whole rc $? $((SECONDS-t1)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
PYTHONPATH=$PWD:$PYTHONPATH python3 bench/e2e_brief.py $OUT/whole
tar czf $OUT/all.tgz -C $OUT whole && rm -rf $OUT/whole
tar czf $OUT/tcache.tgz .tcache; echo "total $((SECONDS-T0)) s"
