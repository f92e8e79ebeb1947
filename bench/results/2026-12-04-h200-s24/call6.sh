#!/usr/bin/env bash
# Session 24 call 6 (issue 14): in calls 3-5 the same configuration read 14-20% apart within one call at 3e7
# tokens (call 5, 1,024 streams: 6.39 and 7.29 M), too much to read a 10% effect from one pair. Runs of 1e8
# tokens (3.3x longer: the start and the end are less of them), alternated: two tokenize threads an engine (the
# default) and one (call 4: +2-8% at 64 streams with 3 cores less busy, -5-15% at 1,024). Predicted: the same
# configuration within 5% of itself; one thread +0-10% at 64 streams and -5-15% at 1,024.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
run(){ name=$1; limit=$2; shift 2; d=$OUT/$name; mkdir -p $d; t0=$SECONDS
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL $limit python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 --parts engine --engine-procs auto --tokens 1e8 "$@" --out $d > $d/log.txt 2>&1
  echo "$name rc $? $((SECONDS-t0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12; }
run two1 110
run one1 110 --tokenizer-threads 1
run two2 110
run one2 110 --tokenizer-threads 1
python3 - $OUT <<'PY'
import json, sys
for name in ("two1", "one1", "two2", "one2"):
    try:
        d = json.load(open(f"{sys.argv[1]}/{name}/e2e.json"))
    except OSError:
        continue
    for k, p in d["parts"].items():
        if k.startswith("engine"):
            t = p["engine_cpu_us_per_token_by_thread"]
            print(f"{name:5s} {k:12s} {p['tokens_per_s'] / 1e6:5.2f} M  {p['seconds']:5.1f} s  cores {p['host_cores_busy']:5.2f}  "
                  f"streams/step {p['streams_per_step']:5.1f}  step {t['step']:.3f}  procs {t.get('tokenize_procs')}")
PY
tar czf $OUT/all.tgz -C $OUT two1 one1 two2 one2 && rm -rf $OUT/two1 $OUT/one1 $OUT/two2 $OUT/one2
echo "total $((SECONDS-T0)) s"
