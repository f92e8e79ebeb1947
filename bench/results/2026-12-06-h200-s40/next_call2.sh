#!/usr/bin/env bash
# Written in session 40 for the next session (about 400 s on a machine): the batch job over corpora of several of
# the old default's parts, at the new default (16 MiB an engine process on a GPU: each corpus one part here) against
# the old one (1 MiB an engine process, given as --part-bytes), alternated twice. 96 long documents (77 MB) and
# 24,000 short ones (89 MB): 7 and 8 parts of 12 MiB with 12 engines. Predicted (session 40's call 1: 2-3 parts lost
# 3-10% and 13-19%, and empty bins between parts): the new default +15-40% on long documents, +20-40% on short ones.
set -u
T0=$SECONDS
source bench/device_env.sh  # (also Triton's cache: .tcache, unpacked from a carried .device/old/tcache.tgz)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
OLD=$(python3 -c "from streamret.engine.shards import engine_procs; print(engine_procs('auto', 'cuda') << 20)")
echo "old default part: $OLD bytes"
run() {  # name, extra args
  d=$OUT/$1; mkdir -p $d
  timeout -s KILL 170 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,batch \
    --engine-procs auto --long-docs 96 --short-docs 24000 --out $d "${@:2}" > $d/log.txt 2>&1
  echo "$1 rc $? $((SECONDS-T0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
  grep "^batch_\|^packed" $d/log.txt | cut -c1-120
}
run new1; run old1 --part-bytes $OLD
[ $((SECONDS-T0)) -lt 300 ] && run new2
[ $((SECONDS-T0)) -lt 400 ] && run old2 --part-bytes $OLD
tar czf $OUT/next_call2.tgz -C $OUT $(cd $OUT && ls -d new* old* 2>/dev/null) && rm -rf $OUT/new* $OUT/old*
