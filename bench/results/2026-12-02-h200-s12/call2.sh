#!/usr/bin/env bash
# Session 12 call 2 (issue 14): engine,service under CUDA MPS (12 engine processes share the GPU), then without word cache.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=/tmp/tc; mkdir -p /tmp/tc
if [ -f .tcache/tc.tar.xz ] && [ ! -f /tmp/tc/.unpacked ]; then tar xJf .tcache/tc.tar.xz -C /tmp && touch /tmp/tc/.unpacked; fi
R=/tmp/res2; mkdir -p $R
pack(){ tar czf $OUT/res2.tgz -C $R . ; }
run(){ name=$1; lim=$2; shift 2; d=$R/$name; mkdir -p $d; t0=$SECONDS
  timeout -s KILL $lim python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 1 --engine-procs auto --front-procs 6 --tokens 1e7 --out $d "$@" > $d/log.txt 2>&1
  echo "e2e $name rc $? $((SECONDS-t0)) s"; pack; }
export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps_pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps_log; mkdir -p /tmp/mps_pipe /tmp/mps_log
nvidia-cuda-mps-control -d > $R/mps_start.txt 2>&1; echo "mps start rc $?"
run mps 200 --parts packed,engine,service --step-samples 1
echo quit | nvidia-cuda-mps-control; sleep 2; cp -r /tmp/mps_log $R/ 2>/dev/null
unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
STREAMRET_WORD_CACHE=0 run nowc 150 --parts engine,service --step-samples 1
for n in mps nowc; do [ -f $R/$n/log.txt ] && { echo "== $n"; grep -v "^   " $R/$n/log.txt | grep -v "^  [a-z_]*->" | tail -22; }; done
