#!/usr/bin/env bash
# Session 58, for a later call (any card; carry [".whl", ".device"]; about 400 s): the tokenize stage's join wait
# (EngineConfig.tokenize_join_wait_s, --tokenize-join-wait-ms) 1 ms against the default 3, bench/e2e_ab.py over
# --parts packed,service (saturation, then half load) with session 54's service settings, a small warm-up run, then
# A / B / B / A.
# Why: issue 14's half-load line is an ack p99 <= 50 ms, and session 54's H100 runs read 52.2 and 54.2 ms. In A1
# (call1_gc_ab, read again in session 58) engine_accepted->engine_queued was 7.92 ms p50 and 20.90 p99 at half load,
# for 2 KB chunks of about 533 tokens, which at the 0.74-1.10 us a token of session 56's readings take 0.4-0.6 ms of a
# tokenizer process's CPU, plus a call's fixed part (an estimate, not a reading). A chunk that arrives while
# another thread cuts waits for it up to the join wait (3 ms) unless the step loop is idle. This tree's
# engine_item_ms gives stage_wait and cutting apart, and the ack legs engine_cutting and engine_cut: read them in A
# first (if stage_wait is small, the join is not the cause and B should read the same).
# Predicted: at half load, stage_wait p50 down by 1-2 ms, the ack p99 down by 1-3 ms; saturation within 5% (at
# saturation enough bytes wait that the join's 32 KiB ends most waits before the 3 ms).
# Rule: the default join wait becomes 1 ms if the half-load ack p99 reads lower in both pairs and the service at
# saturation is not more than 5% lower in both; then engine 64 (which the join was made for: sessions 24-26) must be
# read with both before it lands.
set -u
source bench/device_env.sh
python3 bench/e2e_ab.py --pairs 2 --timeout 150 --warmup-timeout 120 --b "--tokenize-join-wait-ms 1" \
  --warmup "--parts service --tokens 3000000" --out $OUT -- \
  --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,service --engine-procs auto --front-procs 6
(cd $OUT && tar czf all.tgz warm a1 b1 b2 a2 && rm -rf warm a1 b1 b2 a2)
