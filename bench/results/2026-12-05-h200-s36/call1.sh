#!/usr/bin/env bash
# Session 36, after call1b (session 34's script) ran on an H100 and every engine step of two engines failed:
# engine_procs("auto") started 12 engines of ~6.8-7.0 GiB on 79.2 GiB, two ran out of memory capturing their
# graphs at start, and their later captures hit PyTorch's INTERNAL ASSERT (use_count > 0) on the pool that
# clear() kept. Fixed: clear() takes a new pool, auto gives an engine 8 GiB (9 on an H100, 12 on an H200).
# Expected: the new GPU test passes; old_pool_check.py shows the old clear's RuntimeError; the whole list runs
# with no failed part (on an H100: 9 engines; ratios to packed comparable with the H200's only loosely).
set -u
[ -f .device/old/tcache.tgz ] && tar xzf .device/old/tcache.tgz  # a warm cache carried packed (24 MB unpacked)
source bench/results/2026-12-05-h200-s34/gpu_tests.sh 150
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 60 python3 -m pytest -q tests/gpu/test_fused_model_gpu.py -k "clear or captured_at_start" 2>&1 | tail -3
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 60 python3 bench/results/2026-12-05-h200-s36/old_pool_check.py 2>&1 | tail -2
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
t1=$SECONDS
d=$OUT/whole; mkdir -p $d
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 230 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 1 --engine-procs auto --front-procs 6 --short-docs 8000 --out $d > $d/log.txt 2>&1
echo "whole rc $? $((SECONDS-t1)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
PYTHONPATH=$PWD:$PYTHONPATH python3 bench/e2e_brief.py $OUT/whole
grep -A2 "^batch_long: chunks applied" $OUT/whole/log.txt
tar czf $OUT/all.tgz -C $OUT whole && rm -rf $OUT/whole
tar czf $OUT/tcache.tgz .tcache; echo "total $((SECONDS-T0)) s"
