#!/usr/bin/env bash
# Session 51, call 4 (asked for nvidia-h200; whichever card comes). Carry [".whl", ".device/text", ".device/old"].
# On an H200: session 48's call1.sh (issue 13's kernel lines with fla).
# On an H100: where one engine's step goes at 1,024 streams on the GPU host (bench/e2e.py's profile part: the torch
#   profiler with CPU and CUDA activity, every thread, and the step thread's samples; --engine-procs 1, which the
#   profile part needs). Expected from call 3's engine part (9 processes: book_segments 9.0 ms wall / 5.9 CPU of a
#   17.9 ms host step): book_segments' callees (keep_segments) and the schedule at the top of the host-time table.
set -u
T0=$SECONDS
source bench/device_env.sh
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
  bash bench/results/2026-12-07-s48/call1.sh
  exit
fi
d=$OUT/profile; mkdir -p $d
timeout -s KILL 300 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.5 --engine-procs 1 \
  --parts packed,engine,profile --streams 1024 --tokens 1e7 --out $d > $d/log.txt 2>&1
echo "profile rc $? $((SECONDS-T0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
grep -A30 "step thread" $d/e2e_profile.txt | head -40
grep -m1 "model name" /proc/cpuinfo
