#!/usr/bin/env bash
# Session 22 call 2 (issue 14): in call 1, segments per chunk took the host's part of a step from 15 to 5 ms but the
# device wait rose from 3 to 11.6 ms (12 processes time-slicing one GPU, 45% of it busy with kernels). The same
# runs under CUDA MPS (one shared context), and 16 engine processes (the host had 8.5 of 16 cores busy).
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
run(){ name=$1; limit=$2; shift 2; d=$OUT/$name; mkdir -p $d; t0=$SECONDS
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL $limit python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.5 --tokens 1e7 --parts packed,engine "$@" --out $d > $d/log.txt 2>&1
  echo "$name rc $? $((SECONDS-t0)) s"; sed -n '/^part /,/^$/p' $d/log.txt | cut -c1-190; sed -n '/by part, wall/,/^$/p' $d/log.txt | cut -c1-260; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12; }
run procs16 200 --engine-procs 16
export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps_pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps_log; mkdir -p /tmp/mps_pipe /tmp/mps_log
nvidia-cuda-mps-control -d > $OUT/mps_start.txt 2>&1; echo "mps start rc $?"
run mps 200 --engine-procs auto
run mps_chunk 200 --engine-procs auto --segment-by chunk
run mps_procs16 200 --engine-procs 16
echo quit | nvidia-cuda-mps-control; sleep 2
echo "total $((SECONDS-T0)) s"
