#!/usr/bin/env bash
# Session 22 call 4 (issue 14): call 3's tree plus the tokenizer processes sending the pieces as columns (the engine
# process makes no TextPiece unless a step splits a chunk). The whole list (call 3's service parts failed: the
# gRPC health wheel was not carried), the engine parts under CUDA MPS, the batch parts.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
run(){ name=$1; limit=$2; shift 2; d=$OUT/$name; mkdir -p $d; t0=$SECONDS
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL $limit python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.5 --engine-procs auto --tokens 1e7 "$@" --out $d > $d/log.txt 2>&1
  echo "$name rc $? $((SECONDS-t0)) s"; sed -n '/^part /,/^$/p' $d/log.txt | cut -c1-200; sed -n '/by part, wall/,/^$/p' $d/log.txt | cut -c1-260; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12; }
run full 280 --front-procs 6 --parts packed,engine,service
export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps_pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps_log; mkdir -p /tmp/mps_pipe /tmp/mps_log
nvidia-cuda-mps-control -d > $OUT/mps_start.txt 2>&1; echo "mps start rc $?"
run mps 120 --parts packed,engine
echo quit | nvidia-cuda-mps-control; sleep 2
run batch 120 --short-docs 8000 --parts packed,batch
echo "total $((SECONDS-T0)) s"
