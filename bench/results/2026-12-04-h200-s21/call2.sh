#!/usr/bin/env bash
# Session 21 call 2 (issue 14): at 1,024 streams a step waits 8.4 ms for the device (call 1) where the runner's own
# device work is about 1.5 ms: 12 processes time-slice the GPU. The engine parts without and under CUDA MPS
# (one shared context, kernels of different processes at once), then the service under MPS.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
run(){ name=$1; limit=$2; shift 2; d=$OUT/$name; mkdir -p $d; t0=$SECONDS
  timeout -s KILL $limit python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 1 --engine-procs auto "$@" --out $d > $d/log.txt 2>&1
  echo "$name rc $? $((SECONDS-t0)) s"; sed -n '/^part /,/^$/p' $d/log.txt | head -8; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12; }
run nomps 150 --tokens 1e7 --parts packed,engine
export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps_pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps_log; mkdir -p /tmp/mps_pipe /tmp/mps_log
nvidia-cuda-mps-control -d > $OUT/mps_start.txt 2>&1; echo "mps start rc $?"
run mps 260 --front-procs 6 --tokens 1e7 --parts packed,engine,service
run mps_batch 150 --short-docs 8000 --parts packed,batch
echo quit | nvidia-cuda-mps-control; sleep 2; cp -r /tmp/mps_log $OUT/ 2>/dev/null
echo "total $((SECONDS-T0)) s"
