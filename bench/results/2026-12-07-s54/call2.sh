#!/usr/bin/env bash
# Session 54, call 2 (any card; carry [".whl", ".device/text", ".device/old"]; about 480 s).
# How long a chunk waits for a busy tokenize thread (EngineConfig.tokenize_join_wait_s): A the default 10 ms, B 3 ms;
# bench/e2e.py's whole list, a warm-up run (batch parts, not read), then two alternating pairs (bench/e2e_ab.py).
# Why: at the service's half load the tokenize leg of an ack (accepted -> queued) read p50 7.9-8.4 ms and p99
# 20-24 ms (call 1), and an engine process then receives about 1 KB a ms: 32 KiB (join bytes) never gathers, so a
# chunk that arrives while a thread cuts waits out the 10 ms; the half-load ack p99 read 47.2-57.1 ms (target 50).
# Predicted: B's half-load tokenize leg p50 4-6 ms and ack p99 3-8 ms lower; the engine at 64 streams -10% to +5%
# (thinner batches, fewer streams a step); 1,024 streams, saturation and batch parts within 5%.
# Rule: B becomes the default if its half-load ack p99 is lower in both pairs and no part's tokens/s is more than
# 3% lower in both pairs.
set -u
source bench/device_env.sh
python3 bench/e2e_ab.py --pairs 2 --timeout 150 --warmup "--parts packed,batch --packed-seconds 0.3" \
  --b "--tokenize-join-wait-ms 3" --out $OUT -- --text .device/text/man.txt.gz --packed-seconds 1 \
  --engine-procs auto --front-procs 6 --short-docs 8000
for r in a1 b1 b2 a2; do python3 -c "
import json, sys
p = json.load(open(sys.argv[1]))['parts']
for k in ('engine_64', 'service_half', 'service_saturate'):
    x = p.get(k, {}); L = x.get('ack_legs', {}).get('legs_ms', {}).get('engine_accepted->engine_queued', {})
    print(sys.argv[2], k, 'tokenize leg p50/p99', L.get('p50'), L.get('p99'), 'ack p99', x.get('ack_p99_ms'),
          'streams a step', x.get('streams_per_step'))" $OUT/$r/e2e.json $r; done
(cd $OUT && tar czf all.tgz warm a1 b1 b2 a2 && rm -rf warm a1 b1 b2 a2)
