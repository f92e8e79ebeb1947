#!/usr/bin/env bash
# Session 34 (not run: no device machine came): part 2 of session 32's next_call1.sh (the sub-batch A/B) alone;
# part 1 (the whole list) is call1b.sh's second half. Its header, unchanged:
# Written in session 32 for the next session's first call (issue 14; no GPU was lent in session 32, so not run yet).
# The Triton cache is cold in a new checkout: the whole run gets 250 s (e2e.json is saved after each part, so a
# cut run keeps what it measured), and the cache comes back as $OUT/tcache.tgz for the calls after this one.
# 1. The whole list once on this tree: sleeping device waits, 128 KiB tokenize calls, split bursts (session 31's
#    defaults), the ack thread (acks.AckThread, not yet measured on a GPU), and a batch of few sub-batches started
#    all at once (sub_batches.MAX_SUB_BATCHES_PER_ENGINE 4: the 32 long documents go out 3 / 2 an engine instead of
#    24, then 8 alone on 8 engines). The batch parts print their timeline (20 bins).
#    Predicted (as session 31 call 4 on a slow host, or about 1.5x on a fast one): engine 64 streams 6.5-8 M, its
#    applied -> answered leg p50 1.7-2.1 -> 0.5-1.0 ms; 1,024 streams 9.4-11.2 M; service 6-7.5 M; half-load p99
#    38-56 ms.
# 2. The batch parts alone, MAX_SUB_BATCHES_PER_ENGINE 2 (old: two at a time) against 4 (new), alternated twice,
#    old first in one pair and new first in the other. Predicted with 4: long documents +8-20% (the last quarter of
#    the tokens runs on 8 engines x 3 documents, both tokenize threads busy, instead of 8 x 1, one thread cutting
#    each), short documents within the spread (8,000 rows make hundreds of sub-batches: the rule does not apply).
#    Rule: keep 4 if long documents read >= 5% higher in both pairs and short not lower beyond 5% in both.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
RUNS=""
for r in old1 new1 new2 old2; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  extra=""; [ ${r:0:3} = old ] && extra="--max-sub-batches-per-engine 2"
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 70 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,batch --engine-procs auto --short-docs 8000 $extra --out $d > $d/log.txt 2>&1
  echo "$r rc $? $((SECONDS-t0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
  RUNS="$RUNS $r"
done
PYTHONPATH=$PWD:$PYTHONPATH python3 bench/e2e_brief.py $(for r in $RUNS; do echo $OUT/$r; done)
sed -n '/^part /,/^$/p' $OUT/old1/log.txt | cut -c1-200
for r in $RUNS; do echo "== $r"; grep -A2 "^batch_long: chunks applied" $OUT/$r/log.txt; done
grep -m1 "model name" /proc/cpuinfo
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
tar czf $OUT/tcache.tgz .tcache; echo "total $((SECONDS-T0)) s"
