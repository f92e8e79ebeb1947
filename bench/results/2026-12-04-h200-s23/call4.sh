#!/usr/bin/env bash
# Session 23 call 4 (issue 14), tree da7d201. Call 3: at 1,024 streams the step threads were idle 21-43% of each
# step's wall time (parts summed against 12 x seconds / steps) while an item waited 65-120 ms p50 (400 ms p99) in
# the tokenize stage and another 65-190 ms queued, and neither a 1.7 ms shorter booking (trim) nor 4x the window
# raised tokens/s: the input pipeline, not the step loop, sets the pace there. Each of the two stage threads takes
# up to 1 MiB of what waits, so one call holds ~150 items for 100+ ms and hands them over at once.
# Predicted: 128 KiB calls at 1,024 streams tokenize p50 90 -> 20-40 ms, +0-15% tokens/s; 4 stage threads +5-20%;
# both +10-25%. 64 streams: within 10%.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
run(){ name=$1; limit=$2; shift 2; d=$OUT/$name; mkdir -p $d; t0=$SECONDS
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL $limit python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.5 --tokens 1e7 --engine-procs auto "$@" --out $d > $d/log.txt 2>&1
  echo "$name rc $? $((SECONDS-t0)) s"; sed -n '/^part /,/^$/p' $d/log.txt | cut -c1-190; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
  python3 - $d/e2e.json <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for k, p in d["parts"].items():
    if "steps" in p and "loop_parts_ms_per_step" in p:
        per = 12 * p["seconds"] / p["steps"] * 1e3; parts = sum(p["loop_parts_ms_per_step"].values())
        print(k, "wall/step %.1f parts %.1f idle %.0f%%" % (per, parts, 100 * (1 - parts / per)), "items", p["engine_item_ms"],
              "cpu", p["engine_cpu_us_per_token_by_thread"], "cores", p.get("host_cores_busy"))
PY
}
run base 100 --parts engine
run kb128 100 --parts engine --tokenize-batch-kb 128
run t4 100 --parts engine --tokenizer-threads 4
run t4kb128 100 --parts engine --tokenizer-threads 4 --tokenize-batch-kb 128
echo "total $((SECONDS-T0)) s"
