#!/usr/bin/env bash
# Session 24 call 2 (issue 14): where a chunk's round trip goes in the engine parts. By Little's law the
# 1,024-stream part's round trip is ~0.36 s (2.2 M tokens in flight / 6.1 M tok/s), the engine's legs' p50s add
# up to ~0.16 s and the load's own leg is 3-6 ms: the new ack_legs join the load's, the pipe's and the engine's
# stamps of each chunk, with means. Predicted: the pipe legs (written to the engine process's pipe -> accepted,
# applied -> the ack read back in this process) hold 50-150 ms of the mean at 1,024 streams.
# Also bench/tokenize_cost.py with its second pass (the word cache warm): predicted 1.0-1.3 us a token.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 120 python3 bench/tokenize_cost.py --text .device/text/man.txt.gz --copies 1,16 --mb 0.5 --out $OUT/tokcost 2>&1 | tail -6
echo "tokcost $((SECONDS-T0)) s"
d=$OUT/legs; mkdir -p $d
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 150 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.5 --parts engine --engine-procs auto --out $d > $d/log.txt 2>&1
echo "legs rc $? $((SECONDS-T0)) s"; sed -n '/^part /,/^$/p' $d/log.txt | cut -c1-190; sed -n '/round trip by leg/,/^$/p' $d/log.txt; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
echo "total $((SECONDS-T0)) s"
