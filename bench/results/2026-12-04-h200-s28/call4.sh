#!/usr/bin/env bash
# Session 28 call 4 (issue 14): the step budget again (session 22 read 32,768 tokens +13-25% at 1,024 streams in
# absolute tokens/s, before MPS, tokenizer processes and the pool). At 1,024 streams a step holds ~12,700 of its
# 16,384 tokens from ~56-68 streams, with 9-12 ms of host work beside ~5 ms of model a step (calls 1-2); a chunk
# waits ~150 ms queued (each stream's share of a step is under one chunk). 32,768 tokens: more of each stream a
# step, fewer steps a chunk. The packed reference is timed at shapes of the step budget (B x T = budget), so
# compare tokens/s, not ratios. Engine parts at 1e8 tokens on this session's tree, 32,768 / 16,384 / 32,768.
# Predicted: 1,024 streams +5-15%; 64 streams within the spread (its steps hold ~9,000 tokens).
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
RUNS="s32a s16 s32b"
for r in $RUNS; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  tokens=32768; [ $r = s16 ] && tokens=16384
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 120 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,engine --engine-procs auto --tokens 1e8 --step-tokens $tokens --out $d > $d/log.txt 2>&1
  echo "$r rc $? $((SECONDS-t0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
done
PYTHONPATH=$PWD:$PYTHONPATH python3 bench/e2e_brief.py $(for r in $RUNS; do echo $OUT/$r; done)
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
