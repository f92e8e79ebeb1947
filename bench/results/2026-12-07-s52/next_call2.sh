#!/usr/bin/env bash
# Written in session 52 for a later session (any card; carry [".whl", ".device/text", ".device/old"]).
# EngineConfig.step_whole_chunk_tokens (off by default): bench/e2e.py's whole list with --step-whole-chunk-tokens 512
# (max_step_tokens / 64: at least 64 streams a step still) and 1024 (a 929-token short document whole) against off.
# Two calls: HALF=1 (a warm-up, then off / 512 / 1024), HALF=2 (1024 / 512 / off), about 330 s each.
# Why: with fair shares alone a step cuts every chunk past the water level: at 1,024 streams steps of 86-91 streams
# held 25 k tokens of 2 KB chunks of about 450 tokens, and the batch job's 929-token short documents ran as 42
# streams of about 500 tokens a step, so each chunk paid a stream's host work (gather, spans, booking) in two steps
# (session 52, call 4). On the workplace VM the step thread's CPU a token besides gather, launch and scatter fell
# 18% (512) and 21% (1,024) in bench/engine_host.py at 256 streams, and short documents' booking a step by 30% (1,024)
# (RESULTS, "Session 52").
# Predicted: 512: engine 1,024 streams +5-15%, service at saturation +3-10%, batch short within 3%; 1024: batch short
# +5-12% and the rest as 512; engine 64 streams within 3% for both (an engine's 7 streams are all picked anyway).
# Rule: a setting becomes the default if it reads higher on engine 1,024 streams and batch short documents in both of
# its pairs (off1 with HALF=1's run, off2 with HALF=2's) and no part reads more than 3% lower in both.
set -u
source bench/device_env.sh
T0=$SECONDS; RUNS=""
if [ "${HALF:-1}" = 1 ]; then ORDER="warm off1 w512a w1024a"; else ORDER="w1024b w512b off2"; fi
for r in $ORDER; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  extra=""; [ ${r:0:4} = w512 ] && extra="--step-whole-chunk-tokens 512"; [ ${r:0:5} = w1024 ] && extra="--step-whole-chunk-tokens 1024"
  if [ $r = warm ]; then parts="--parts packed,batch --packed-seconds 0.3"; lim=90; else parts="--packed-seconds 1 --front-procs 6"; lim=150; fi
  timeout -s KILL $lim python3 bench/e2e.py --text .device/text/man.txt.gz --engine-procs auto --short-docs 8000 \
    $parts $extra --out $d > $d/log.txt 2>&1
  echo "$r rc $? $((SECONDS-t0)) s"; grep -A12 "Traceback" $d/log.txt | head -12
  RUNS="$RUNS $r"
done
python3 bench/e2e_brief.py $(for r in $RUNS; do [ $r = warm ] || echo $OUT/$r; done)
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
