#!/usr/bin/env bash
# For session 30's second call (issue 14), written in session 29 (no machine was lent that session): the step loop's
# overlap (EngineConfig.overlap_steps, landed in session 29; the GPU's default stays "always"). With "always" a
# chunk queued while step k+1 is planned is booked only after step k+2 has been planned and launched too: at half
# load (3 streams, ~2k tokens a step, ~3.5 ms of host work a step) queued-to-applied was 13-14 ms p50, two
# iterations of the loop; at 64 streams the loop is latency-bound (idle 15 ms a step, a 4-chunk window a stream),
# but there a chunk's queued-to-applied is 4.5 ms p50 of a ~20 ms round trip (tokenize 12 ms). "queued" books step k
# before planning k+1 unless a full step's tokens (32,768) wait: one iteration less for each chunk, and the just-
# booked streams can be in the next step. On the workplace VM (CPU engine, open-loop Poisson load, "never" against
# "always": bench/results/2026-12-04-vm-s29/overlap_ab.py) ack p50 -3 to -33% in seven pairs. Engine parts at 1e8
# tokens here, the service and batch parts in next_session_call3.sh, always / queued
# alternated twice. Predicted with queued: 64 streams 0 to +8% tokens/s (their queues hold less than a step: no
# overlap), 1,024 streams within the spread (their queues hold more than a step: overlapped as before). The rule
# for the default is in next_session_call3.sh.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
RUNS="ea1 eq1 ea2 eq2"
for r in $RUNS; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  pk=; [ $r = ea1 ] && pk=packed,  # the packed reference once a call: the A/B reads tokens/s
  mode=always; [ ${r:1:1} = q ] && mode=queued
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 110 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 --parts ${pk}engine --engine-procs auto --tokens 1e8 --overlap-steps $mode --out $d > $d/log.txt 2>&1
  echo "$r rc $? $((SECONDS-t0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
done
PYTHONPATH=$PWD:$PYTHONPATH python3 bench/e2e_brief.py $(for r in $RUNS; do echo $OUT/$r; done)
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
