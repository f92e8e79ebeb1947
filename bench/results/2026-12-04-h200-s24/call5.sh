#!/usr/bin/env bash
# Session 24 call 5 (issue 14): a step launched while the one before it is booked must hold >= 4096 tokens
# (EngineConfig.min_overlapped_step_tokens, new), else the loop books first and takes in what came meanwhile.
# Call 4: with one tokenize thread an engine, steps at 64 streams held 4.6 streams instead of 2.1 and the step
# thread's CPU a token fell from 1.1-1.3 to 0.64 us (the host 3 cores less busy), engine +2-8%. Call 3: smaller
# steps (results handed over in parts) cost 20-27% at 64 streams. Predicted: at 64 streams steps 2.1 -> 3.5-5
# streams, step CPU a token -30-45%, engine +5-15%; at 1,024 streams (11 k tokens a step) no change. Runs
# alternated: 4096 (new default), 0 (as before), twice; then 8192.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
run(){ name=$1; limit=$2; shift 2; d=$OUT/$name; mkdir -p $d; t0=$SECONDS
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL $limit python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.5 --parts engine --engine-procs auto "$@" --out $d > $d/log.txt 2>&1
  echo "$name rc $? $((SECONDS-t0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12; }
run new1 150
run old1 150 --min-overlapped-step-tokens 0
run new2 150
run old2 150 --min-overlapped-step-tokens 0
run big 150 --min-overlapped-step-tokens 8192
python3 - $OUT <<'PY'
import json, sys
for name in ("new1", "old1", "new2", "old2", "big"):
    try:
        d = json.load(open(f"{sys.argv[1]}/{name}/e2e.json"))
    except OSError:
        continue
    for k, p in d["parts"].items():
        if k.startswith("engine"):
            t = p["engine_cpu_us_per_token_by_thread"]
            print(f"{name:5s} {k:12s} {p['tokens_per_s'] / 1e6:5.2f} M  cores {p['host_cores_busy']:5.2f}  streams/step "
                  f"{p['streams_per_step']:5.1f}  tok/step {p['tokens_per_step']:7.0f}  step {t['step']:.3f}  procs "
                  f"{t.get('tokenize_procs')}  rt mean {p['ack_legs']['total_ms'].get('mean')}")
PY
tar czf $OUT/all.tgz -C $OUT new1 old1 new2 old2 big && rm -rf $OUT/new1 $OUT/old1 $OUT/new2 $OUT/old2 $OUT/big
echo "total $((SECONDS-T0)) s"
