#!/usr/bin/env bash
# Session 22 call 6, run as session 23 call 1 (issue 14): the tokenize stage's calls capped at 256 KiB instead of 1 MiB
# (EngineConfig.tokenize_batch_bytes). Call 5 (1 MiB): at saturation accepted-to-queued p50 / p99 47 / 225 ms.
# Predicted with 256 KiB: 20-30 / 60-100 ms, ack p99 at saturation 427 -> 300-400 ms, tokens/s within the spread.
# The list but the batch parts at 256 KiB, then the service alone at 1024 KiB (the default).
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
run(){ name=$1; limit=$2; shift 2; d=$OUT/$name; mkdir -p $d; t0=$SECONDS
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL $limit python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.5 --engine-procs auto --tokens 1e7 --front-procs 6 "$@" --out $d > $d/log.txt 2>&1
  echo "$name rc $? $((SECONDS-t0)) s"; sed -n '/^part /,/^$/p' $d/log.txt | cut -c1-200; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
  python3 - $d/e2e.json <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for k, p in d["parts"].items():
    if isinstance(p, dict) and "ack_legs" in p:
        L = p["ack_legs"]["legs_ms"]
        print(k, "tokenize", p.get("engine_item_ms"), "acc->q", L["engine_accepted->engine_queued"])
PY
}
run kb256 200 --tokenize-batch-kb 256 --parts packed,engine,service
run kb1024 150 --parts packed,service
echo "total $((SECONDS-T0)) s"
