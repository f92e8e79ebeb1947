#!/usr/bin/env bash
# Session 23 call 2 (issue 14): kept segments in one pool per engine (9a6205c). On the CPU the step's
# book_segments fell 2.46-2.60 -> 1.96-2.02 ms at 139 streams a step. Predicted on the H200: book_segments at 1,024
# streams 5.7 -> 4.0-4.8 ms wall a step, the engine +3-8% there (inside the 20-25% spread between calls, so the
# loop's parts are what tells). With --step-samples 1: where the step threads are, by line, on this tree. Then the
# same under CUDA MPS. The Triton cache is written back for the next calls.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
run(){ name=$1; limit=$2; shift 2; d=$OUT/$name; mkdir -p $d; t0=$SECONDS
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL $limit python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.5 --tokens 1e7 --engine-procs auto "$@" --out $d > $d/log.txt 2>&1
  echo "$name rc $? $((SECONDS-t0)) s"; sed -n '/^part /,/^$/p' $d/log.txt | cut -c1-190; sed -n '/by part, wall/,/^$/p' $d/log.txt | cut -c1-260; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12; }
run pool 220 --parts packed,engine --step-samples 1
export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps_pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps_log; mkdir -p /tmp/mps_pipe /tmp/mps_log
nvidia-cuda-mps-control -d > $OUT/mps_start.txt 2>&1; echo "mps start rc $?"
run pool_mps 180 --parts packed,engine
echo quit | nvidia-cuda-mps-control; sleep 2
tar czf $OUT/tcache.tgz .tcache 2>/dev/null; ls -la $OUT/tcache.tgz
echo "total $((SECONDS-T0)) s"
