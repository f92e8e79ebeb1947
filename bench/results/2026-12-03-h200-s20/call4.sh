#!/usr/bin/env bash
# Session 20 call 4 (issue 14, diagnostic): is the engine at 64 streams bound by the bench's window of chunks in
# flight (a chunk's round trip) or by its step loop? The same engine part at --window 4 (the setting),
# 16, and with 4 engine processes instead of auto (12).
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
run(){ name=$1; shift; d=$OUT/$name; mkdir -p $d; t0=$SECONDS
  timeout -s KILL 200 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 1 --tokens 1e7 "$@" --out $d > $d/log.txt 2>&1
  echo "$name rc $? $((SECONDS-t0)) s"; sed -n '/^part /,/^$/p' $d/log.txt; }
run w4 --engine-procs auto --parts packed,engine
run w16 --engine-procs auto --parts packed,engine --streams 64 --window 16
run p4w4 --engine-procs 4 --parts packed,engine --streams 64
echo "total $((SECONDS-T0)) s"
