#!/usr/bin/env bash
# Session 23 call 6 (issue 14): call 5's samples show both the step thread (51-65%) and the first tokenize thread
# (63-64%) of each engine waiting for work at 1,024 streams: the part runs in waves (every stream starts at once
# with 4 chunks; a stage call takes all that waits; a step acks ~50 streams together). With --tokens 1e7 each of the
# 1,024 streams sends 19 chunks, about five windows, so filling and draining the pipeline is a large share of a
# 1.8 s part. Predicted: 4e7 tokens (76 chunks a stream) +5-15% at 1,024 streams over 1e7; 128 KiB stage calls at
# 4e7 a further +10-25% (items reach the step thread in smaller, earlier batches, so the two stages overlap).
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
run(){ name=$1; limit=$2; shift 2; d=$OUT/$name; mkdir -p $d; t0=$SECONDS
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL $limit python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.5 --engine-procs auto --streams 1024 --parts engine --step-samples 1 "$@" --out $d > $d/log.txt 2>&1
  echo "$name rc $? $((SECONDS-t0)) s"; sed -n '/^part /,/^$/p' $d/log.txt | cut -c1-190; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
  python3 - $d/e2e.json <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for k, p in d["parts"].items():
    if "steps" in p and "loop_parts_ms_per_step" in p:
        per = 12 * p["seconds"] / p["steps"] * 1e3; parts = sum(p["loop_parts_ms_per_step"].values())
        share = lambda key: sum(r["share"] for r in p.get(key, {}).get("own", []) if r["function"].startswith("threading.py:wait"))
        print(k, "wall/step %.1f parts %.1f" % (per, parts), "waiting: step %.0f%% tokenize %.0f%%" % (100 * share("step_samples"), 100 * share("tokenize_samples")),
              "items", p["engine_item_ms"], "cores", p.get("host_cores_busy"))
PY
}
run t1e7 80 --tokens 1e7
run t4e7 120 --tokens 4e7
run t4e7_kb128 120 --tokens 4e7 --tokenize-batch-kb 128
echo "total $((SECONDS-T0)) s"
