#!/usr/bin/env bash
# Written in session 39, not run (its device time ran out: 262 s left, too little to start a machine); the next
# session's first call (about 100 s on a machine). The batch parts alone with the new stamp of when the job
# handed a part's documents to the engine processes (bench/e2e.py's timeline: first_handed_ms), to tell the start's
# reading and checking from its sending. Predicted: long documents handed at 80-110 ms of the job's clock (the whole
# 25.6 MB part read, its texts turned into bytes and checked), the first chunk accepted 10-30 ms after that (the
# engines' first batch: sending, opening, imports); short documents handed at 110-160 ms, accepted 2-15 ms after.
set -u
T0=$SECONDS
[ -f .device/old/tcache.tgz ] && [ ! -d .tcache ] && tar xzf .device/old/tcache.tgz
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
d=$OUT/batch; mkdir -p $d
timeout -s KILL 150 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,batch \
  --engine-procs auto --short-docs 8000 --out $d > $d/log.txt 2>&1
echo "batch rc $? $((SECONDS-T0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
grep -A1 "chunks applied / documents under way" $d/log.txt | cut -c1-400
grep "^batch_\|^packed" $d/log.txt | tail -4
