#!/usr/bin/env bash
# Session 23 call 10 (issue 14): call 9's A/B on one machine gave the engines' own MPS daemon +2-7%, not call 7's
# +38%. In call 7 the daemon was started by hand and the whole bench process (which holds a CUDA context of its
# own: the model for the packed part) was an MPS client too; with STREAMRET_MPS auto only the engine processes are.
# 1,024 streams only: hand-started daemon for everything, then auto. Predicted if the parent's context is it:
# hand +20-40% over auto.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
run(){ name=$1; limit=$2; shift 2; d=$OUT/$name; mkdir -p $d; t0=$SECONDS
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL $limit python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.5 --engine-procs auto --parts engine --streams 1024 "$@" --out $d > $d/log.txt 2>&1
  echo "$name rc $? $((SECONDS-t0)) s"; sed -n '/^part /,/^$/p' $d/log.txt | cut -c1-190; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12; }
STREAMRET_MPS=auto run auto 70
( export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps_pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps_log; mkdir -p /tmp/mps_pipe /tmp/mps_log
  nvidia-cuda-mps-control -d; run hand 70; echo quit | nvidia-cuda-mps-control )
echo "total $((SECONDS-T0)) s"
