#!/usr/bin/env bash
# Written in session 38 (no device lent that session), not run yet: after session 37's next_call1-3.sh (issue 13's
# list; the step_fill A/B, whose rule may change the default first). The whole e2e list once on the tree as it then
# stands, 9 engines on an H100 (12 on an H200), to read two things session 38 changed on the CPU alone:
# 1. keep_segments (a step's booking of kept segments) took 3.7 -> 2.7 ms of CPU a step at 85 streams x 13 new
#    segments on the workplace VM (bench/results/2026-12-05-cpu-s38/time_keep.py). Predicted: the step thread's
#    book_segments CPU at 1,024 streams 2.8 -> 2.0-2.3 ms a step on a fast H100 host (5.7 -> 4.2-4.8 on the slow one
#    of session 37), the engine at 1,024 streams within its spread or up to +5%; nothing else moves.
# 2. The batch parts' timeline now spans the job's own clock and gives the first chunk accepted, queued and applied.
#    Session 37 read the first chunk applied 254 ms after the part's start on an H100 (job of 0.72 s: a third of the
#    long part, at 0.58 of packed; its middle bins ran at about 0.9 of packed). Predicted, of the job's clock: first
#    accepted 20-60 ms (reading, cutting, sending 24 sub-batches of one 800 KB document each, opening), first queued
#    40-120 ms (a window of 4 x 64 KiB a document, cut two chunks a call), first applied 60-170 ms. Whichever of the
#    three takes most of the start is the next change for the long documents.
set -u
T0=$SECONDS
[ -f .device/old/tcache.tgz ] && tar xzf .device/old/tcache.tgz
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
d=$OUT/whole; mkdir -p $d
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 240 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 1 \
  --engine-procs auto --front-procs 6 --short-docs 8000 --out $d > $d/log.txt 2>&1
echo "whole rc $? $((SECONDS-T0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
PYTHONPATH=$PWD:$PYTHONPATH python3 bench/e2e_brief.py $OUT/whole
grep -A1 "chunks applied / documents under way" $d/log.txt
tar czf $OUT/all.tgz -C $OUT whole && rm -rf $OUT/whole
echo "total $((SECONDS-T0)) s"
