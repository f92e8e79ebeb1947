#!/usr/bin/env bash
# Session 27 call 2 (issue 14): session 26's next_session_call2.sh as written (header below), no --tokenize-batch-kb (call 1:
# 1 MiB, 128 KiB and 32 KiB within the spread of each other), then bench/tokenize_cost.py with 1 and 16 copies as
# this session's baseline for the tokenizer process's cost (session 26 call 4: warm 0.603 / 0.820 us a token).
# For session 27's second call (issue 14), written at the end of session 26 (not run yet): the whole list twice
# on this tree (session 26 landed after its last whole list: a short document's summary from its tracker's
# kept arrays, one foreach launch to zero a new stream's state, the join's 10 ms bound, and an idle tokenize
# thread taking chunks at once while the step loop waits for work: at half load, where the loop waits about a
# third of the time, the join held chunks for the busy thread and the tokenize leg's p50 read 6.8-8.6 ms in
# session 26 against 4.5-6.2 before the join worked; predicted 4.5-6.5 ms now, half-load ack p99 -5 to -10
# ms, the other parts unchanged, the loop rarely idle there). Add
# --tokenize-batch-kb N to both runs if next_session.sh found a better value. Predicted as session 26 call 4
# (two runs at the default sizes): engine 64 streams 3.9-4.5 M, 1,024 streams 5.8-6.1 M, service at saturation
# 0.72-0.80 x engine (ack p99 0.77-0.84 s), half-load ack p99 46-54 ms (56-59 there), batch long 0.47-0.56, short 0.30-0.34
# (the short part's engine Python threads 0.5-0.55 us a token instead of 0.76).
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
RUNS="fulla fullb"
for r in $RUNS; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 200 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 1 --engine-procs auto --front-procs 6 --short-docs 8000 "$@" --out $d > $d/log.txt 2>&1
  echo "$r rc $? $((SECONDS-t0)) s"; sed -n '/^part /,/^$/p' $d/log.txt | cut -c1-200; grep -B2 -A12 "FAILED\|Traceback" $d/log.txt | head -20
done
PYTHONPATH=$PWD:$PYTHONPATH python3 bench/e2e_brief.py $(for r in $RUNS; do echo $OUT/$r; done)
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
PYTHONPATH=$PWD:$PYTHONPATH python3 bench/tokenize_cost.py --text .device/text/man.txt.gz --copies 1,16 --mb 1 --out $OUT 2>&1 | tail -4
echo "total $((SECONDS-T0)) s"
