#!/usr/bin/env bash
# Session 26, call 1 (issue 14): session 25's next_session.sh as written. Engine parts at 1e8
# tokens, alternated on one machine: the default (two tokenize threads, join 0), two with
# EngineConfig.tokenize_join_bytes 32 KiB now that a thread which would leave too little for the other to join
# takes it all (session 25: before, join 32 KiB held 2.4 streams a step at 64 streams, like two threads; on the
# CPU loop bench/tokenize_join_loop.py it now holds 6.0 of 6, as one thread does), and one thread. Six runs of
# ~70 s. Predicted: join 32 KiB at 64 streams like one thread (about 5 streams a step, +8-24% over two), at
# 1,024 streams like two (within the spread); if so, its default becomes 32 KiB and call 2 runs the whole list
# with it (bench/results/2026-12-04-h200-s25/call4.sh with --tokenize-join-kb 32 against none).
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
run(){ name=$1; limit=$2; shift 2; d=$OUT/$name; mkdir -p $d; t0=$SECONDS
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL $limit python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 --parts engine --engine-procs auto --tokens 1e8 "$@" --out $d > $d/log.txt 2>&1
  echo "$name rc $? $((SECONDS-t0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12; }
RUNS="two1 join32a one1 two2 join32b one2"
run two1 90
run join32a 90 --tokenize-join-kb 32
run one1 90 --tokenizer-threads 1
run two2 90
run join32b 90 --tokenize-join-kb 32
run one2 90 --tokenizer-threads 1
python3 - $OUT $RUNS <<'PY'
import json, sys
for name in sys.argv[2:]:
    try:
        d = json.load(open(f"{sys.argv[1]}/{name}/e2e.json"))
    except OSError:
        continue
    if name == sys.argv[2]:
        print("cpu", d["versions"].get("cpu_topology"))
    for k, p in d["parts"].items():
        if k.startswith("engine"):
            t = p["engine_cpu_us_per_token_by_thread"]
            c = p["loop_parts_cpu_ms_per_step"]
            print(f"{name:7s} {k:12s} {p['tokens_per_s'] / 1e6:5.2f} M  cores {p['host_cores_busy']:5.2f}  streams/step "
                  f"{p['streams_per_step']:5.1f}  step {t['step']:.3f} (wait {c['wait']:.2f} ms)  procs "
                  f"{t.get('tokenize_procs')}  load cpu {p['cpu_us_per_token'].get('python_threads')}  rt mean "
                  f"{p['ack_legs']['total_ms'].get('mean')}  turn p50 {p['load_legs_ms']['ack_to_next_sent'].get('p50')}  stolen "
                  f"{p.get('host_cores_stolen')}")
PY
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
