#!/usr/bin/env bash
# Session 25 call 3 (issue 14): the whole list in one run on this tree (the engine parts' load now through
# submit_append_to), as session 23 call 8 ran it. Predicted (machines differ 20-25%): engine 64 streams 3.5-4.5 M,
# 1,024 streams 5.5-7 M at 3e7 tokens; service and batch as in session 23 (3.8 / 1.8 M, 4.5 / 3.9 M).
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
d=$OUT/full; mkdir -p $d
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 500 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 1 --engine-procs auto --front-procs 6 --short-docs 8000 --out $d > $d/log.txt 2>&1
echo "full rc $? $((SECONDS-T0)) s"; sed -n '/^part /,/^$/p' $d/log.txt | cut -c1-230; sed -n '/by part, wall/,/^$/p' $d/log.txt | cut -c1-200; grep -B2 -A12 "FAILED\|Traceback\|MPS" $d/log.txt | head -30
python3 - $d/e2e.json <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print("errors", d.get("errors"))
for k, p in d["parts"].items():
    if isinstance(p, dict):
        print(k, {x: p.get(x) for x in ("mps", "tokens_per_s", "chunks_per_stream", "seconds", "streams_per_step", "wide_steps_waiting", "engine_item_ms")})
PY
echo "total $((SECONDS-T0)) s"
