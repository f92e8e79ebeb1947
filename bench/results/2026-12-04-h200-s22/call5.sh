#!/usr/bin/env bash
# Session 22 call 5 (issue 14): the tree that landed (calls 3-4 gave each stream to a stage thread by hash; a review
# found that one slow chunk then held up every stream of its thread, so the stage is back to one shared queue, a
# thread passing over the streams another is cutting). The whole list but the batch parts, once.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
d=$OUT/full; mkdir -p $d
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 280 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.5 --engine-procs auto --tokens 1e7 --front-procs 6 --parts packed,engine,service --out $d > $d/log.txt 2>&1
echo "full rc $?"; sed -n '/^part /,/^$/p' $d/log.txt | cut -c1-200; sed -n '/by part, wall/,/^$/p' $d/log.txt | cut -c1-260; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
echo "total $((SECONDS-T0)) s"
