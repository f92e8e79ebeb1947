#!/usr/bin/env bash
# Session 23 call 3 (issue 14), tree da7d201: a stream whose kept segments overflow keeps 48 of 64, so it is ranked
# every few steps (CPU: engine_host book_segments 1.96-2.02 -> 1.42-1.49 ms a step). Call 2 also showed the host
# at 14.3 of 16 cores at 64 streams (the step threads spinning 3 ms a step in device waits; the tokenizer
# processes 1.5 us a token) and a 64-stream round trip of ~38 ms for 4 chunks in flight a stream (Little's law:
# 64 x 4 x 533 tokens / 3.58 M tok/s), so the window, not the engine, may bound that part.
# Predicted: A (trim) book_segments at 1,024 streams 5.5 -> 3.5-4.0 ms wall a step, the engine +5-10% there;
# B (device wait sleep) 64 streams +5-15%; C (window 16) 64 streams +10-50%, 1,024 no better; D (MPS) 64 +15%.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
run(){ name=$1; limit=$2; shift 2; d=$OUT/$name; mkdir -p $d; t0=$SECONDS
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL $limit python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.5 --tokens 1e7 --engine-procs auto "$@" --out $d > $d/log.txt 2>&1
  echo "$name rc $? $((SECONDS-t0)) s"; sed -n '/^part /,/^$/p' $d/log.txt | cut -c1-190; sed -n '/by part, wall/,/^$/p' $d/log.txt | cut -c1-260; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12; }
run A_trim 150 --parts packed,engine
run B_sleep 120 --parts engine --device-wait sleep
run C_window16 120 --parts engine --window 16
export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps_pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps_log; mkdir -p /tmp/mps_pipe /tmp/mps_log
nvidia-cuda-mps-control -d > $OUT/mps_start.txt 2>&1; echo "mps start rc $?"
run D_mps 120 --parts engine
run E_mps_window16 120 --parts engine --window 16
echo quit | nvidia-cuda-mps-control; sleep 2
echo "total $((SECONDS-T0)) s"
