#!/usr/bin/env bash
# Session 34 (not run: no device machine came): session 31's next_session.sh without its whole-list run
# (call1b.sh has it). Its header, unchanged:
# For session 32's first call (issue 14), written at the end of session 31 (not run yet). Split bursts became the
# default after session 31's call 5 measured only the engine parts (64 streams +17% / +21% on a slow host); the
# service and batch parts have not run with them. First the whole list once on the final tree (defaults: sleeping
# device waits, 128 KiB tokenize calls, split bursts), then the service and batch parts with split bursts off and
# on, alternated twice, off first in one pair and on first in the other (session 31's machines drifted upward
# within a call). Predicted with split on: service at saturation 0 to +10% (its waves are wider than the join),
# half-load ack p99 within +-5 ms, batch short 0 to +10%, long within the spread; the whole list as session 31
# call 4's run on a slow host (engine 64 / 1,024 streams 6.5-7.7 / 9.4-11.2 M) or about 1.5x on a fast one. Rule:
# keep split on unless a part reads lower beyond 5% in both pairs. Also landed after session 31's calls: a step's acks
# settled on a thread of their own as soon as its chunks are applied (acks.AckThread), before the step's segments
# are kept: predicted the engine parts' applied -> answered leg at 64 streams 1.7-2.1 ms p50 (session 31, slow host)
# -> 0.5-1.0, i.e. 64 streams +5-8% beside split bursts' own gain.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
RUNS=""
for r in off1 on1 on2 off2; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  extra=""; [ ${r:0:3} = off ] && extra="--no-tokenize-split-bursts"
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 90 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,service,batch --engine-procs auto --front-procs 6 --short-docs 8000 $extra --out $d > $d/log.txt 2>&1
  echo "$r rc $? $((SECONDS-t0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
  RUNS="$RUNS $r"
done
PYTHONPATH=$PWD:$PYTHONPATH python3 bench/e2e_brief.py $(for r in $RUNS; do echo $OUT/$r; done)
sed -n '/^part /,/^$/p' $OUT/on1/log.txt | cut -c1-200
grep -m1 "model name" /proc/cpuinfo
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
