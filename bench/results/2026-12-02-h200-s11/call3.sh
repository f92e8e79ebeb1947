#!/usr/bin/env bash
# Session 11 call 3 (issue 14): the device-wait GPU test, then e2e with device_wait sleep (the new default), the
# same with spin (engine,service), and sleep with 6 engine processes (engine,service); 1e7 tokens a part.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=/tmp/tc; mkdir -p /tmp/tc
if [ -f .tcache/tc.tar.xz ] && [ ! -f /tmp/tc/.unpacked ]; then tar xJf .tcache/tc.tar.xz -C /tmp && touch /tmp/tc/.unpacked; fi
R=/tmp/res3; mkdir -p $R
pack(){ tar czf $OUT/res3.tgz -C $R . ; }
timeout -s KILL 90 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_device_wait_gpu.py > $R/gpu_test.txt 2>&1
echo "gpu test rc $?"; tail -3 $R/gpu_test.txt
run(){ name=$1; lim=$2; shift 2; d=$R/$name; mkdir -p $d; t0=$SECONDS
  timeout -s KILL $lim python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 1 --engine-procs auto --front-procs 6 --tokens 1e7 --out $d "$@" > $d/log.txt 2>&1
  echo "e2e $name rc $? $((SECONDS-t0)) s"; pack; }
run sleep 150 --parts packed,engine,service,batch
run spin 120 --parts engine,service --device-wait spin
run procs6 120 --parts engine,service --engine-procs 6
for n in sleep spin procs6; do [ -f $R/$n/log.txt ] && { echo "== $n"; sed -n '/^part /,/^$/p' $R/$n/log.txt; }; done
python3 - <<'PY'
import json
for n in ("sleep", "spin", "procs6"):
    try: d = json.load(open(f"/tmp/res3/{n}/e2e.json"))
    except Exception as e: print(n, e); continue
    for p, v in d["parts"].items():
        if isinstance(v, dict) and "cpu_us_per_token" in v:
            c = v["cpu_us_per_token"]; t = v.get("engine_cpu_us_per_token_by_thread", {})
            print(n, p, "engine", c.get("engine_procs"), "front", c.get("front_procs"), "step", t.get("step"), "tok", t.get("tokenize"), "cores", v.get("host_cores_busy"))
PY
