#!/usr/bin/env bash
# Written in session 52 for a later session (any card; carry [".whl", ".device/text", ".device/old"]; about 430 s a
# call). EngineConfig.step_whole_chunk_tokens (off by default): bench/e2e.py's whole list with
# --step-whole-chunk-tokens $WHOLE against off, two alternating pairs after a warm-up run (bench/e2e_ab.py). Two
# calls: WHOLE=512 (max_step_tokens / 64: at least 64 streams a step still), then WHOLE=1024 (a 929-token short
# document whole).
# Why: with fair shares alone a step cuts every chunk past the water level: at 1,024 streams steps of 77-91 streams
# held 25 k tokens of 2 KB chunks of 450-500 tokens, and the batch job's 929-token short documents ran as 42
# streams of about 500 tokens a step, so each chunk paid a stream's host work (gather, spans, booking) in two steps
# (session 52, call 4). On the workplace VM the step thread's CPU a token besides gather, launch and scatter fell
# 18% (512) and 21% (1,024) in bench/engine_host.py at 256 streams, and short documents' booking a step by 30% (1,024)
# (RESULTS, "Session 52").
# Predicted: 512: engine 1,024 streams +5-15%, service at saturation +3-10%, batch short within 3%; 1024: batch short
# +5-12% and the rest as 512; engine 64 streams within 3% for both (an engine's 7 streams are all picked anyway).
# Rule: a setting becomes the default if it reads higher on engine 1,024 streams and batch short documents in both
# pairs and no part reads more than 3% lower in both.
set -u
source bench/device_env.sh
python3 bench/e2e_ab.py --pairs 2 --timeout 150 --warmup "--parts packed,batch --packed-seconds 0.3" \
  --b "--step-whole-chunk-tokens ${WHOLE:-512}" --out $OUT -- --text .device/text/man.txt.gz --packed-seconds 1 \
  --engine-procs auto --front-procs 6 --short-docs 8000
(cd $OUT && tar czf all.tgz warm a1 b1 b2 a2 && rm -rf warm a1 b1 b2 a2)
