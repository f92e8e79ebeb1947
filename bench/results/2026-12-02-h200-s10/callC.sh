#!/usr/bin/env bash
# Session 10 call C: kernel A/B (HEAD / before the zero-span skip / zero tile by pointer), then parity, then the reader A/B.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=/tmp/tc; mkdir -p /tmp/tc
if [ -f .tcache/tc.tar.xz ] && [ ! -f /tmp/tc/.unpacked ]; then tar xJf .tcache/tc.tar.xz -C /tmp && touch /tmp/tc/.unpacked; fi
R=/tmp/resC; mkdir -p $R
pack(){ tar czf $OUT/resC.tgz -C $R . ; }
for var in head old ptr head; do
  if [ $var = head ]; then KP=$(pwd)/kernels; else KP=$(pwd)/.device/k$var/kernels; fi
  mkdir -p /tmp/kp_$var && ln -sfn $KP /tmp/kp_$var/streamret_kernels
  PYTHONPATH=/tmp/kp_$var:$PYTHONPATH timeout -s KILL 90 python3 .device/kab.py $var >> $R/kab.jsonl 2>> $R/kab_err.txt
  echo "kab $var rc $?"
done
pack
t0=$SECONDS
timeout -s KILL 200 python3 bench/fla_parity.py --out $R/p > $R/parity_log.txt 2>&1; echo "parity rc $? $((SECONDS-t0)) s"; pack
for r in per_connection shared; do
  d=$R/e2e-$r; mkdir -p $d; t0=$SECONDS
  STREAMRET_ENGINE_READER=$r timeout -s KILL 100 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 1 --engine-procs auto --front-procs 6 --parts engine,service --out $d > $d/log.txt 2>&1
  echo "e2e $r rc $? $((SECONDS-t0)) s"; pack
done
python3 - <<'PY'
import json
for l in open('/tmp/resC/kab.jsonl'):
    r = json.loads(l); print(f"{r['variant']:5s} {r['case']:10s} {r['mode']:5s} {r['ms']:.3f} ms err {r['err_o']:.2e}/{r['err_state']:.2e}")
PY
tail -5 $R/parity_log.txt
for r in per_connection shared; do echo "== $r"; grep -i "ratio\|tok/s\|p99\|saturation" $R/e2e-$r/log.txt | tail -8; done
