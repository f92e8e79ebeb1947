#!/usr/bin/env bash
# Session 30 call 5 (issue 14; ran, see bench/RESULTS.md): the whole list once (session 28 call 6's command) on this session's final tree (defaults only: overlap "queued" on
# the GPU since this session's calls 3-4, the tokenizer processes' rows), then the engine's GPU tests. Same machine
# as calls 1-4. Predicted from calls 1-4 (this machine): engine 64 / 1,024 streams 9.2-10.1 / 11.1-13.8 M; service at
# saturation 9.3-9.7 M, ack p99 0.3-0.36 s; half load p99 31-35 ms; batch long 11.6-11.8 M, short 8.7-9.1 M.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS; d=$OUT/whole; mkdir -p $d
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 300 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 1 --engine-procs auto --front-procs 6 --short-docs 8000 --out $d > $d/log.txt 2>&1
echo "whole rc $? $((SECONDS-T0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 120 python3 -m pytest -q -p no:cacheprovider tests/test_engine_gpu.py 2>&1 | tail -3
PYTHONPATH=$PWD:$PYTHONPATH python3 bench/e2e_brief.py $d
tail -25 $d/log.txt
tar czf $OUT/all.tgz -C $OUT whole && rm -rf $d
echo "total $((SECONDS-T0)) s"
