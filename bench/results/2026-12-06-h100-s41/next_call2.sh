#!/usr/bin/env bash
# Written in session 41 for the next session, on an H200 (about 420 s): the service at saturation and half load with
# 9 engine processes against `auto` (12 on an H200), alternated twice. Why: on an H100 (session 41, 16 cores, auto 9)
# 12 engines ran the service at saturation 10% below 9 (3.96 against 4.39 M tokens/s, one pair) with 11.8 streams a
# step against 46 (their queues nearly empty: queued-to-applied p50 21 ms against 181; the tokenize leg p99 187 ms
# against 127), the engine processes' CPU a token 1.56 against 1.23 us, while the engine part at 1,024 streams read
# 10% more with 12; 8 engines ran it 11-13% below 9 (two pairs). The H200's service with 12 ran 13-15 streams a
# step (session 40). Predicted on an H200: the service at saturation with 9 engines +5 to +20% over 12, its steps
# 40-60 streams; the engine at 1,024 streams 5-20% lower with 9. Rule: a service default of 9 engine processes on
# a 16-core host (the engine and batch parts keep auto) only if the service gains >= 10% at saturation in both
# pairs and the half-load ack p99 is no worse by more than 10 ms in either.
set -u
T0=$SECONDS
source bench/device_env.sh  # (also Triton's cache: .tcache, unpacked from a carried .device/old/tcache.tgz)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
run() {  # name, engine procs
  d=$OUT/$1; mkdir -p $d
  timeout -s KILL 130 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 \
    --parts packed,engine,service --engine-procs $2 --front-procs 6 --out $d > $d/log.txt 2>&1
  echo "$1 rc $? $((SECONDS-T0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
  grep "^engine_\|^service_" $d/log.txt | cut -c1-150
}
run auto1 auto; run p9_1 9
[ $((SECONDS-T0)) -lt 300 ] && run auto2 auto
[ $((SECONDS-T0)) -lt 400 ] && run p9_2 9
tar czf $OUT/next_call2.tgz -C $OUT $(cd $OUT && ls -d auto* p9_* 2>/dev/null) && rm -rf $OUT/auto* $OUT/p9_*
