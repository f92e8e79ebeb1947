#!/usr/bin/env bash
# Session 40, call 1. The batch parts alone (session 39's call5.sh: the hand-over stamp), at the bench's part size
# (32 MiB: the whole corpus one part, as RESULTS' figures were measured) and at the job's own default (--part-bytes
# 0: 1 MiB per engine process, 9 MiB with 9 engines, which a user of `streamret embed` gets), alternated.
# Predicted, 32 MiB (s39/call5): long documents handed at 80-110 ms of the job's clock, the first chunk accepted
# 10-30 ms after; short documents handed at 110-160 ms, accepted 2-15 ms after.
# Predicted, the job's default: the parts in flight hold at most one part's bytes, so each 9 MiB part (about 11
# long documents: one or two an engine) drains before the next starts: long documents 0.30-0.45 of packed
# (32 MiB: 0.57-0.65), short ones (4 parts) 0.28-0.38 (32 MiB: 0.38-0.48).
# (As run, before e2e.py's --part-bytes default changed in this session: a run without it took 32 MiB parts then; the same
# run now: --part-bytes 33554432. "--part-bytes 0" was, and is, the job's own default: 1 MiB an engine process then.)
set -u
T0=$SECONDS
[ -f .device/old/tcache.tgz ] && [ ! -d .tcache ] && tar xzf .device/old/tcache.tgz
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
nvidia-smi --query-gpu=name --format=csv,noheader
run() {  # name, extra args
  d=$OUT/$1; mkdir -p $d
  timeout -s KILL 150 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,batch \
    --engine-procs auto --short-docs 8000 --out $d "${@:2}" > $d/log.txt 2>&1
  echo "$1 rc $? $((SECONDS-T0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
  grep -A1 "chunks applied / documents under way" $d/log.txt | cut -c1-300
  grep "^batch_\|^packed" $d/log.txt | tail -3
}
run p32_1
run pdef_1 --part-bytes 0
[ $((SECONDS-T0)) -lt 380 ] && run p32_2
[ $((SECONDS-T0)) -lt 460 ] && run pdef_2 --part-bytes 0
tar czf $OUT/call1.tgz -C $OUT p32_1 pdef_1 $(ls -d $OUT/p32_2 $OUT/pdef_2 2>/dev/null | xargs -n1 basename) && rm -rf $OUT/p32_* $OUT/pdef_*
