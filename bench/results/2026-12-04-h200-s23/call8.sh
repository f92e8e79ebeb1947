#!/usr/bin/env bash
# Session 23 call 8 (issue 14): the whole list in one run on the landed tree: engine processes on their own MPS
# daemon (STREAMRET_MPS auto, new), the default --tokens 3e7 (the steady state), --front-procs 6 and 8,000 short
# documents as in the earlier full runs. Predicted: engine 64 streams 5.3-5.6 M (about 0.37), 1,024 streams 7-8 M
# (0.50-0.55); service at saturation 4-5 M; batch long / short 4-5 M.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
d=$OUT/full; mkdir -p $d
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 520 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 1 --engine-procs auto --front-procs 6 --short-docs 8000 --out $d > $d/log.txt 2>&1
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
