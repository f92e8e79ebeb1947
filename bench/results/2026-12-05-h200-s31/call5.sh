#!/usr/bin/env bash
# Session 31 call 5 (issue 14): the whole list twice on the final tree (defaults only: sleeping device waits and
# 128 KiB tokenize calls since calls 1-4), session 30 call 5's command; then the engine's GPU tests. A new machine
# start: only its own runs compare. Predicted from call 4's whole run (flags = these defaults) if the host is as
# slow: engine 64 / 1,024 streams 5.6-7 / 9.4-11.2 M, service 5.7-7.2 M (p99 0.4-0.55 s), half-load p99 38-56 ms,
# batch long 10-11 M, short 6-7.7 M; on a fast host (session 30's) about 1.5x the engine and service figures.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS; RUNS=""
for r in whole1 whole2; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 200 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 1 --engine-procs auto --front-procs 6 --short-docs 8000 --out $d > $d/log.txt 2>&1
  echo "$r rc $? $((SECONDS-t0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
  RUNS="$RUNS $r"
done
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 120 python3 -m pytest -q -p no:cacheprovider tests/test_engine_gpu.py tests/gpu/test_device_wait_gpu.py 2>&1 | tail -3
PYTHONPATH=$PWD:$PYTHONPATH python3 bench/e2e_brief.py $(for r in $RUNS; do echo $OUT/$r; done)
for r in $RUNS; do sed -n '/^part /,/^$/p' $OUT/$r/log.txt | cut -c1-200; done
grep -m1 "model name" /proc/cpuinfo
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
