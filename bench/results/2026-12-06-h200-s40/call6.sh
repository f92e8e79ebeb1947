#!/usr/bin/env bash
# NOT RUN: refused, 274 s of device time were too little to start a machine. next_call2.sh is the full version.
# Session 40, call 6 (the session's last 274 s of device time): next_call2.sh cut to one pair at smaller sizes, the
# batch job over corpora of several old-default parts: 64 long documents (51 MB) and 16,000 short ones (59 MB),
# at the new default (16 MiB an engine process on a GPU: one part each) and at the old one (1 MiB an engine process,
# given as --part-bytes: 4-5 parts each), after a small warm-up run. Predicted: the new default +10-30% on long documents, +15-35% on short.
set -u
T0=$SECONDS
[ -f .device/old/tcache.tgz ] && [ ! -d .tcache ] && tar xzf .device/old/tcache.tgz
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
OLD=$(python3 -c "from streamret.engine.shards import engine_procs; print(engine_procs('auto', 'cuda') << 20)")
echo "old default part: $OLD bytes"
run() {  # name, extra args
  d=$OUT/$1; mkdir -p $d
  timeout -s KILL 100 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,batch \
    --engine-procs auto --long-docs 64 --short-docs 16000 --out $d "${@:2}" > $d/log.txt 2>&1
  echo "$1 rc $? $((SECONDS-T0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
  grep "^batch_\|^packed" $d/log.txt | cut -c1-120
}
# a small run first: the machine's first run compiles what the carried cache lacks (session 40's call 1: its first
# batch parts ran at 61 ms of model a step); its figures are not read
timeout -s KILL 60 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.1 --parts packed,batch \
  --engine-procs auto --long-docs 4 --short-docs 400 --out $OUT/warm > /dev/null 2>&1; echo "warm rc $? $((SECONDS-T0)) s"
rm -rf $OUT/warm
run new1; run old1 --part-bytes $OLD
tar czf $OUT/call6.tgz -C $OUT $(cd $OUT && ls -d new* old* 2>/dev/null) && rm -rf $OUT/new* $OUT/old*
