#!/usr/bin/env bash
# Session 26, call 2 (issue 14): session 25's next_session_call2.sh, run with the new default tokenize_join_bytes 32 KiB (call 1): whether the batch
# parts' one-second length hides their steady state. The packed reference and the batch parts, the default sizes
# (32 long documents of 200 k tokens, 8,000 short ones) and four times as many (128, 32,000), alternated.
# Add --tokenize-join-kb 32 to both runs if the first call made it the default's better. Predicted: with four
# times the documents, batch short x packed +0.05 or more (the first sub-batches' tokenizing before any step
# weighs less), batch long about the same or more (up to 11 documents an engine instead of 3: more chains at once).
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
RUNS="defa largea defb largeb"
run(){ name=$1; shift; d=$OUT/$name; mkdir -p $d; t0=$SECONDS
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 140 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,batch --engine-procs auto "$@" --out $d > $d/log.txt 2>&1
  echo "$name rc $? $((SECONDS-t0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12; }
run defa --short-docs 8000
run largea --long-docs 128 --short-docs 32000
run defb --short-docs 8000
run largeb --long-docs 128 --short-docs 32000
for r in $RUNS; do echo "== $r"; sed -n '/^part /,/^$/p' $OUT/$r/log.txt | cut -c1-150; done
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
