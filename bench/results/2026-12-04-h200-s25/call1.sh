#!/usr/bin/env bash
# Session 25 call 1 (issue 14): session 24's next_session.sh as written. Engine parts at 1e8
# tokens (session 24 call 6: the 3e7-token parts are mostly the start and the end; a configuration read 14-20%
# apart within one call at 3e7), alternated on one machine: the default (two tokenize threads, join 0), one
# tokenize thread, and two with EngineConfig.tokenize_join_bytes 8 KiB (new in session 24, not run on a GPU;
# 32 KiB in a later call if 8 misses). Six runs of ~60 s. Predicted: join 8 KiB reads like one thread at 64 streams (5.9-6.1 against 4.5-5.4 M, 2-3 cores less
# busy) and like two at 1,024 (8.1-8.4 M); if so, its default becomes that value and call 2 runs the whole list
# (service parts included) with it.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
run(){ name=$1; limit=$2; shift 2; d=$OUT/$name; mkdir -p $d; t0=$SECONDS
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL $limit python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 --parts engine --engine-procs auto --tokens 1e8 "$@" --out $d > $d/log.txt 2>&1
  echo "$name rc $? $((SECONDS-t0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12; }
run two1 90
run join8a 90 --tokenize-join-kb 8
run one1 90 --tokenizer-threads 1
run two2 90
run join8b 90 --tokenize-join-kb 8
run one2 90 --tokenizer-threads 1
python3 - $OUT <<'PY'
import json, sys
for name in ("two1", "join8a", "one1", "two2", "join8b", "one2"):
    try:
        d = json.load(open(f"{sys.argv[1]}/{name}/e2e.json"))
    except OSError:
        continue
    for k, p in d["parts"].items():
        if k.startswith("engine"):
            t = p["engine_cpu_us_per_token_by_thread"]
            print(f"{name:7s} {k:12s} {p['tokens_per_s'] / 1e6:5.2f} M  cores {p['host_cores_busy']:5.2f}  streams/step "
                  f"{p['streams_per_step']:5.1f}  step {t['step']:.3f}  procs {t.get('tokenize_procs')}  rt mean "
                  f"{p['ack_legs']['total_ms'].get('mean')}")
PY
tar czf $OUT/all.tgz -C $OUT two1 join8a one1 two2 join8b one2 && rm -rf $OUT/two1 $OUT/join8a $OUT/one1 $OUT/two2 $OUT/join8b $OUT/one2
echo "total $((SECONDS-T0)) s"
