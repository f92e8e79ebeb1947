#!/usr/bin/env bash
# Session 25 call 4 (issue 14): the whole list but the profile (which needs one engine process), alternated:
# two tokenize threads with EngineConfig.tokenize_join_bytes 32 KiB against the default (join 0). Call 1: join
# 8 KiB read like two threads at 64 streams (4.19 / 4.19 M, steps of 2.2 streams): with 64 streams an engine
# holds about 43 KB in flight, so 8 KiB waiting is soon reached; 32 KiB is rarely reached there and always at
# 1,024 streams (hundreds of KB waiting). Predicted: join 32 KiB like one thread at 64 streams (steps of about
# 5 streams, +5-20%), like two at 1,024 streams and in the service and batch parts (within the spread).
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
RUNS="join32a twoa join32b twob"
run(){ name=$1; shift; d=$OUT/$name; mkdir -p $d; t0=$SECONDS
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 140 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,engine,service,batch --engine-procs auto --front-procs 6 --short-docs 8000 "$@" --out $d > $d/log.txt 2>&1
  echo "$name rc $? $((SECONDS-t0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12; }
run join32a --tokenize-join-kb 32
run twoa
run join32b --tokenize-join-kb 32
run twob
for r in $RUNS; do echo "== $r"; sed -n '/^part /,/^$/p' $OUT/$r/log.txt | cut -c1-150; done
python3 - $OUT $RUNS <<'PY'
import json, sys
for name in sys.argv[2:]:
    try:
        d = json.load(open(f"{sys.argv[1]}/{name}/e2e.json"))
    except OSError:
        continue
    for k, p in d["parts"].items():
        if k.startswith("engine"):
            t = p["engine_cpu_us_per_token_by_thread"]
            print(f"{name:8s} {k:12s} {p['tokens_per_s'] / 1e6:5.2f} M  cores {p['host_cores_busy']:5.2f}  streams/step "
                  f"{p['streams_per_step']:5.1f}  step {t['step']:.3f}  procs {t.get('tokenize_procs')}")
PY
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
