#!/usr/bin/env bash
# Session 34, third call: session 32's next_call2.sh, unchanged below.
# For the next session's second call (issue 14), written in session 32 (no GPU was lent that session; not run yet).
# EngineConfig.draining_step_chunks 2 against off (the default), engine and service parts, alternated twice (off
# first in one pair, on first in the other). Why: at 64 streams each engine's steps take nearly every chunk its ~5
# streams have in flight (session 31 call 4: 4.8 streams and 10.1k tokens a step = 3.6 of the 4 chunks a stream),
# so the tokenize stage and the step take turns, and the round trip is their sum (tokenize p50 6.6-9.9 ms, queued
# -> applied 4.8, applied -> answered 2.0). With the cap the rest of a stream's chunks make the next step at once
# while the chunks sent after the first step's acks are cut. A CPU closed loop with this host's figures
# (bench/tokenize_join_loop.py --streams 6 --tok-wait sleep --tok-us-per-byte 0.22 --step-ms 1.4
# --step-us-per-byte 0.062 --device-ms 1.0 --device-us-per-byte 0.1 --configs 2:32:split --step-chunks 0|2)
# read +18-27% MB/s and a round trip p50 of 20 -> 15.6 ms, 85 streams unchanged.
# The real engine on the CPU with a sleeping stand-in for the model (bench/results/2026-12-05-cpu-s32/engine_loop.py),
# once the cap was narrowed to while the tokenize stage has nothing to cut: +13%, +17%, +12% at 6 streams.
# Predicted with 2: engine at 64 streams +8-25%, its queued -> applied leg shorter and steps narrower in tokens;
# 1,024 streams within the spread (its queue holds more than a step: the cap is off); service at saturation within
# +-5% (arrivals keep the tokenize stage busy there, and the cap plays only while it is idle); half-load ack p99
# within +-10 ms. Rule: make 2 the GPU's default if 64 streams reads >= 8% higher in both pairs and no part
# reads lower beyond 5% in both pairs.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS; RUNS=""
for r in off1 on1 on2 off2; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  extra=""; [ ${r:0:2} = on ] && extra="--draining-step-chunks 2"
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 110 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,engine,service --engine-procs auto --front-procs 6 $extra --out $d > $d/log.txt 2>&1
  echo "$r rc $? $((SECONDS-t0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
  RUNS="$RUNS $r"
done
PYTHONPATH=$PWD:$PYTHONPATH python3 bench/e2e_brief.py $(for r in $RUNS; do echo $OUT/$r; done)
grep -m1 "model name" /proc/cpuinfo
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
