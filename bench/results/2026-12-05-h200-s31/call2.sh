#!/usr/bin/env bash
# Session 31 call 2 (issue 14; ran right after call 1, same machine, as one command): the random:small token path
# that call 1 had no time left for: packed and engine parts. Predicted >= 0.70 of its packed forward at 64 and
# 1,024 streams (session 4 read 1.29 / 1.54 of an eager reference).
source bench/device_env.sh; export TRITON_CACHE_DIR=$PWD/.tcache; d=$OUT/small; mkdir -p $d
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 200 python3 bench/e2e.py --model random:small --text .device/text/man.txt.gz --packed-seconds 0.5 --parts packed,engine --engine-procs auto --out $d > $d/log.txt 2>&1
echo rc $?; grep -A12 "FAILED\|Traceback" $d/log.txt | head; PYTHONPATH=$PWD:$PYTHONPATH python3 bench/e2e_brief.py $d; tail -22 $d/log.txt | cut -c1-220
