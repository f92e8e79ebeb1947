#!/usr/bin/env bash
# Session 37, second call (the first, s36's next_call1.sh as it was, failed: the segmented chunk kernels' programs
# past a sequence's end loaded slots past the scratch tensor's end, an illegal memory access in the packed forward
# and in graph capture). Same runs on the fixed tree. Predicted: every GPU test passes (incl. the new packed
# cases); one engine 5.2-5.8 GiB (6.8-7.0 in session 36); the whole list on an H100 as session 36's call1 within its
# A/B spread (engine 64 / 1,024 streams 5.3-7.0 / 7.0-9.5 M, service at saturation 5.0-7.1 M, batch long
# 7.5-8.4 M, short 4.9-6.3 M).
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
