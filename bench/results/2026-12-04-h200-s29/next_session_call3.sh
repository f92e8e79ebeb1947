#!/usr/bin/env bash
# For session 30's third call (issue 14), right after next_session_call2.sh (its header has the reasoning): the service
# parts (saturation, half load) and the batch parts (long and short documents), EngineConfig.overlap_steps always /
# queued alternated twice. Predicted with queued: service at saturation 0 to +10% (its engines idle ~76 ms a step:
# their queues hold less than a step, so they book first); half-load queued-to-applied p50 13-14 -> 7-10 ms, ack p50
# -3 to -6 ms and p99 -5 to -10 ms; batch long and short 0 to +10% (idle 80-100 ms a step: acks a step sooner, the
# next chunk of a document sooner). Rule (with next_session_call2.sh's engine parts): if queued reads the half-load p99
# lower in both pairs and no part lower (beyond 5%) in both, make "queued" the GPU's default
# (config.default_step_overlap) and run the whole list once (session 28's next_session_call2.sh).
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
RUNS=""
for r in sa1 sq1 sa2 sq2; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  pk=; [ $r = sa1 ] && pk=packed,  # the packed reference once a call: the A/B reads tokens/s
  mode=always; [ ${r:1:1} = q ] && mode=queued
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 120 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 --parts ${pk}service,batch --engine-procs auto --front-procs 6 --short-docs 8000 --overlap-steps $mode --out $d > $d/log.txt 2>&1
  echo "$r rc $? $((SECONDS-t0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
  RUNS="$RUNS $r"
done
PYTHONPATH=$PWD:$PYTHONPATH python3 bench/e2e_brief.py $(for r in $RUNS; do echo $OUT/$r; done)
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
