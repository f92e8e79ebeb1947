#!/usr/bin/env bash
# Written in session 40 for the next session (about 330 s on a machine): the service at saturation with 8 engine
# processes against `auto` (12 on an H200, 9 on an H100), alternated twice, with the engine parts it is a ratio of.
# Why: on the H200 (session 40, calls 4-5) the service at saturation ran 13-15 streams a step with 15.3-15.6 of 16
# cores busy and read 0.58-0.72 of the engine at 1,024 streams; on an H100 with 9 engines (session 39) 47 streams a
# step and 0.78-0.90. At half load too the H200's host was full (15.1-15.4 of 16 cores): its engine processes took
# 2.6-3.0 us of CPU a token (1.0-1.2 at saturation), the step threads 1.7-2.1 (steps of 3.3-4.8 streams and 1.8-2.6 k
# tokens, 3.7-4.4 ms of CPU each) and the tokenizer processes 1.3 (small calls): fewer, wider steps should free cores.
# Predicted with 8 engines on an H200: engine at 1,024 streams -5 to -20% (12 read 20% more than 8 when auto was set),
# the service at saturation +5-20% in tokens/s and 0.75-0.95 of its own engine figure; at half load 1-3 cores fewer
# busy and the ack p99 5-20 ms lower. Rule: a service default below auto's engine count only if the service gains
# >= 10% at saturation or >= 10 ms of half-load p99 in both pairs (the batch and engine parts keep their own figure).
set -u
T0=$SECONDS
N=${1:-8}  # the engine processes set against auto (8 as it ran in session 41; session 41's next_call2.sh gives 9)
source bench/device_env.sh  # (also Triton's cache: .tcache, unpacked from a carried .device/old/tcache.tgz)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
run() {  # name, engine procs
  d=$OUT/$1; mkdir -p $d
  timeout -s KILL 130 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 \
    --parts packed,engine,service --engine-procs $2 --front-procs 6 --out $d > $d/log.txt 2>&1
  echo "$1 rc $? $((SECONDS-T0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
  grep "^engine_\|^service_" $d/log.txt | cut -c1-150
}
run auto1 auto; run p${N}_1 $N
[ $((SECONDS-T0)) -lt 300 ] && run auto2 auto
[ $((SECONDS-T0)) -lt 400 ] && run p${N}_2 $N
tar czf $OUT/next_call1.tgz -C $OUT $(cd $OUT && ls -d auto* p${N}_* 2>/dev/null) && rm -rf $OUT/auto* $OUT/p${N}_*
