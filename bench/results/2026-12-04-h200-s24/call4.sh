#!/usr/bin/env bash
# Session 24 call 4 (issue 14): the tokenizer processes cost 1.3-1.5 us a token of CPU in the engine parts
# against 0.77-0.97 for one call of 128 chunks alone (call 2), 0.45 on the workplace VM: the host's cores are
# shared by 12 step threads and 24 tokenizer processes. 1. bench/tokenize_cost.py with several calls a pass (32
# chunks a call). Predicted: 1 copy 0.7-0.9, 16 copies 0.9-1.2 us (warm). 2. One tokenize thread (and process) an
# engine instead of two, alternated with the default. Predicted: the children's CPU a token -5-15%; engine at
# 1,024 streams within +-10%, at 64 streams -5-15% (a chunk waits behind its engine's other batch).
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 120 python3 bench/tokenize_cost.py --text .device/text/man.txt.gz --copies 1,16 --mb 0.5 --out $OUT/tokcost 2>&1 | tail -6
echo "tokcost $((SECONDS-T0)) s"
run(){ name=$1; limit=$2; shift 2; d=$OUT/$name; mkdir -p $d; t0=$SECONDS
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL $limit python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.5 --parts engine --engine-procs auto "$@" --out $d > $d/log.txt 2>&1
  echo "$name rc $? $((SECONDS-t0)) s"; grep -A2 "^part " $d/log.txt | cut -c1-150; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12; }
run two1 150
run one1 150 --tokenizer-threads 1
run two2 150
run one2 150 --tokenizer-threads 1
python3 - $OUT <<'PY'
import json, sys, glob
for f in sorted(glob.glob(sys.argv[1] + "/*/e2e.json")):
    d = json.load(open(f))
    for k, p in d["parts"].items():
        if k.startswith("engine"):
            t = p["engine_cpu_us_per_token_by_thread"]
            print(f.split("/")[-2], k, round(p["tokens_per_s"] / 1e6, 2), "cores", p["host_cores_busy"], "step", t["step"],
                  "tok", t["tokenize"], "procs", t.get("tokenize_procs"), "rt", p["ack_legs"]["total_ms"].get("mean"))
PY
tar czf $OUT/all.tgz -C $OUT tokcost two1 one1 two2 one2 && rm -rf $OUT/tokcost $OUT/two1 $OUT/one1 $OUT/two2 $OUT/one2
echo "total $((SECONDS-T0)) s"
