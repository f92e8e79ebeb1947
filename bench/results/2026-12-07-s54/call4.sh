#!/usr/bin/env bash
# Session 54, call 4 (any card; carry [".whl", ".device/text", ".device/old", ".device/ab_base"]; under 600 s).
# With little device time left, one call for both A/Bs: call3.sh (the batch changes, about 200 s), then call2.sh's
# join-wait A/B cut to the parts it is predicted to move (bench/e2e.py --parts packed,engine,service --streams 64;
# no warm-up: call3's runs warmed the machine), two pairs, in what is left of 580 s. call2.sh's header has that
# A/B's prediction and rule (the batch parts and 1,024 streams are not read here).
set -u
T0=$SECONDS
bash bench/results/2026-12-07-s54/call3.sh
mkdir -p $OUT/call3 && mv $OUT/all.tgz $OUT/call3/
LEFT=$((580 - (SECONDS - T0)))
echo "join-wait A/B: $LEFT s left"
source bench/device_env.sh > /dev/null
timeout -s KILL $LEFT python3 bench/e2e_ab.py --pairs 2 --timeout 100 --b "--tokenize-join-wait-ms 3" --out $OUT/join \
  -- --text .device/text/man.txt.gz --packed-seconds 0.5 --parts packed,engine,service --streams 64 \
  --engine-procs auto --front-procs 6
for r in a1 b1 b2 a2; do [ -f $OUT/join/$r/e2e.json ] && python3 -c "
import json, sys
p = json.load(open(sys.argv[1]))['parts']
for k in ('engine_64', 'service_half', 'service_saturate'):
    x = p.get(k, {}); L = x.get('ack_legs', {}).get('legs_ms', {}).get('engine_accepted->engine_queued', {})
    print(sys.argv[2], k, 'tokenize leg p50/p99', L.get('p50'), L.get('p99'), 'ack p99', x.get('ack_p99_ms'),
          'streams a step', x.get('streams_per_step'))" $OUT/join/$r/e2e.json $r; done
(cd $OUT/join && tar czf all.tgz $(ls -d a? b? 2>/dev/null) && rm -rf a? b?)
echo "total $((SECONDS - T0)) s"
