#!/usr/bin/env bash
# Session 29: run as call 3 (session 28's next_session_call2.sh, unchanged).
# For session 29's second call (issue 14), written at the end of session 28 (not run yet): the whole list once on
# the tree after next_session.sh's outcome (the default tokenize_batch_bytes as it then stands), and the two parts
# that read worse at 32,768 tokens in session 28's single pair (call 5: half-load ack p99 88 against 64 ms at 24%
# more load; short documents 5.71 against 6.18 M): an A/B of the step budget on those parts, alternated twice.
# Predicted: the whole list as session 28's call 6 (engine 5-6.5 / 8-10.5 M, service 5-6.5 M, half-load p99 60-90
# ms, batch long 8.5-9.5 M, short 5.2-6.3 M), and within the spread between the budgets on the half load and the
# short documents (the half load's steps hold 3 streams; a short document's whole chunk fits either budget).
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
RUNS="full1"
for r in $RUNS; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 125 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 1 --engine-procs auto --front-procs 6 --short-docs 8000 --out $d > $d/log.txt 2>&1
  echo "$r rc $? $((SECONDS-t0)) s"; sed -n '/^part /,/^$/p' $d/log.txt | cut -c1-200; grep -B2 -A12 "FAILED\|Traceback" $d/log.txt | head -20
done
for r in h32a h16a h32b h16b; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  tokens=32768; [ ${r:1:2} = 16 ] && tokens=16384
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 90 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,service,batch --engine-procs auto --front-procs 6 --short-docs 8000 --step-tokens $tokens --out $d > $d/log.txt 2>&1
  echo "$r rc $? $((SECONDS-t0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
  RUNS="$RUNS $r"
done
PYTHONPATH=$PWD:$PYTHONPATH python3 bench/e2e_brief.py $(for r in $RUNS; do echo $OUT/$r; done)
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
