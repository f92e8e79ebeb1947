#!/usr/bin/env bash
# Session 29: run as call 1 (the script written at the end of session 28 as next_session.sh, unchanged).
# For session 29's first call (issue 14), written at the end of session 28 (not run yet): the tokenize stage's call
# size at the GPU's new step budget (32,768 tokens). With it the engine's queue stopped being the longest wait at
# 1,024 streams: a chunk's tokenize leg p50 25-28 ms in runs of 1e8 tokens (call 4) and 83-111 ms in the whole
# list's runs of 3e7 (calls 5-6, where every stream starts at once and 1 MiB calls of ~250 k tokens move the load
# in waves), against queued-to-applied 48-63 ms. Session 23 (256 KiB) and session 27 (128 / 32 KiB, batch parts)
# found no gain when the engine's queue was the bound. Engine parts at 1e8 tokens (the steady state) and at 3e7
# (the whole list's size), --tokenize-batch-kb 1024 (default) / 128, alternated. Predicted with 128 KiB: at 1,024
# streams the tokenize leg p50 -30 to -60% and tokens/s +0-10% at 1e8, +5-20% at 3e7; 64 streams within the spread
# (their calls hold under 64 KiB). If 128 KiB reads >= 5% more at 1,024 streams in both 1e8 pairs, lower the
# default (EngineConfig.tokenize_batch_bytes) and run next_session_call2.sh.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
RUNS="b1024a b128a b1024b b128b"
for r in $RUNS; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  kb=1024; [ ${r:1:3} = 128 ] && kb=128
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 110 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,engine --engine-procs auto --tokens 1e8 --tokenize-batch-kb $kb --out $d > $d/log.txt 2>&1
  echo "$r rc $? $((SECONDS-t0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
done
for r in w1024 w128; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  kb=1024; [ $r = w128 ] && kb=128
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 60 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,engine --engine-procs auto --tokenize-batch-kb $kb --out $d > $d/log.txt 2>&1
  echo "$r rc $? $((SECONDS-t0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
  RUNS="$RUNS $r"
done
PYTHONPATH=$PWD:$PYTHONPATH python3 bench/e2e_brief.py $(for r in $RUNS; do echo $OUT/$r; done)
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
