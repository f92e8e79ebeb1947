#!/usr/bin/env bash
# For the next session's first call (written in session 36, not run yet). Session 36's calls all ran on an H100
# (bench/RESULTS.md, "Session 36"); this re-takes both issues' lists on the final tree, whatever card comes:
# 1. GPU tests: session 33's device path (gpu_tests.sh) and the CUDA-graph forward (clear and capture again).
# 2. The whole e2e list (sub-batches two an engine again). Predicted on an H100 (9 engines): as session 36's
#    call1 within its A/B spread (engine 64 / 1,024 streams 5.3-7.0 / 7.0-9.5 M, service at saturation 5.0-7.1 M,
#    batch long 7.5-8.4 M, short 4.9-6.3 M); on an H200 (12 engines) as session 31's figures.
# 3. bench/model.py, issue 13's command, without its profile and fla parity (fla's kernels compile cold: 272 s in
#    session 11): check, the model against fla, the default model against MiniLM, the graph forward, the K256 and
#    K64 kernels at N64 x L512. Predicted on an H200 as sessions 11-12 read (K256 0.89 ms, 1.51x fla, 35% of the
#    floor; 1.3B forward 1.09-1.12x fla). On an H100 the figures are that card's, not issue 13's (H200).
# The Triton cache: carry .device/old/tcache.tgz (session 36's, packed; .tcache unpacked is over the carry limit
# beside the tree). Returns tcache.tgz for the calls after this one. About 500 s, the model part cold.
set -u
[ -f .device/old/tcache.tgz ] && tar xzf .device/old/tcache.tgz
source bench/results/2026-12-05-h200-s34/gpu_tests.sh 150
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 90 python3 -m pytest -q tests/gpu/test_fused_model_gpu.py 2>&1 | tail -3
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
t1=$SECONDS; d=$OUT/whole; mkdir -p $d
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 200 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 1 --engine-procs auto --front-procs 6 --short-docs 8000 --out $d > $d/log.txt 2>&1
echo "whole rc $? $((SECONDS-t1)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
t1=$SECONDS; m=$OUT/model; mkdir -p $m
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 300 python3 bench/model.py --sections check,model,default,graph,kernels \
  --kernel-args "--layouts H8K256V512 H16K64V128 --shapes N64xL512" --out $m > $m/log.txt 2>&1
echo "model rc $? $((SECONDS-t1)) s"; grep -A12 "Traceback" $m/log.txt | head -12
PYTHONPATH=$PWD:$PYTHONPATH python3 bench/e2e_brief.py $OUT/whole
tail -40 $m/log.txt | cut -c1-200
tar czf $OUT/all.tgz -C $OUT whole model && rm -rf $OUT/whole $OUT/model
tar czf $OUT/tcache.tgz .tcache; echo "total $((SECONDS-T0)) s"
