#!/usr/bin/env bash
# Session 25 call 2 (issue 14): engine parts at 1e8 tokens with the load's new path (bench/service.py run_engine:
# with engine processes, submit_append_to with acks in batches and a pass's chunks released together, instead
# of a Future per chunk). Call 1 showed the load's own turn (an ack to the stream's next chunk sent) at p50
# 68-76 ms at 1,024 streams with two tokenize threads, its process at about 1.3 cores of mostly GIL-held work.
# Alternated: default (two tokenize threads, device_wait spin), one tokenize thread, two threads with
# device_wait sleep (the step thread's wait was 1.25 ms of CPU a step at 1,024 streams in call 1).
# Predicted: the load's turn at 1,024 under 10 ms p50; engine 1,024 streams 8-9 M (call 1: 7.05-7.09 for two
# threads), 64 streams as call 1 (4.3-4.7; its turn was 0.6 ms already); sleep: the step's wait CPU near 0,
# tokens/s within +-8% of spin.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
run(){ name=$1; limit=$2; shift 2; d=$OUT/$name; mkdir -p $d; t0=$SECONDS
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL $limit python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 --parts engine --engine-procs auto --tokens 1e8 "$@" --out $d > $d/log.txt 2>&1
  echo "$name rc $? $((SECONDS-t0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12; }
RUNS="two1 one1 sleep1 two2 one2 sleep2"
run two1 90
run one1 90 --tokenizer-threads 1
run sleep1 90 --device-wait sleep
run two2 90
run one2 90 --tokenizer-threads 1
run sleep2 90 --device-wait sleep
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
            c = p["loop_parts_cpu_ms_per_step"]
            print(f"{name:7s} {k:12s} {p['tokens_per_s'] / 1e6:5.2f} M  cores {p['host_cores_busy']:5.2f}  streams/step "
                  f"{p['streams_per_step']:5.1f}  step {t['step']:.3f} (wait {c['wait']:.2f} ms)  procs "
                  f"{t.get('tokenize_procs')}  load cpu {p['cpu_us_per_token'].get('python_threads')}  rt mean "
                  f"{p['ack_legs']['total_ms'].get('mean')}  turn p50 {p['load_legs_ms']['ack_to_next_sent'].get('p50')}")
PY
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
