#!/usr/bin/env bash
# Session 11 call 2 (issue 14): the whole e2e with the default step switch interval, then engine+service with
# --step-switch-interval none, then the default again (A/B/A), 1e7 tokens a part.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=/tmp/tc; mkdir -p /tmp/tc
if [ -f .tcache/tc.tar.xz ] && [ ! -f /tmp/tc/.unpacked ]; then tar xJf .tcache/tc.tar.xz -C /tmp && touch /tmp/tc/.unpacked; fi
R=/tmp/res2; mkdir -p $R
pack(){ tar czf $OUT/res2.tgz -C $R . ; }
run(){ name=$1; lim=$2; shift 2; d=$R/$name; mkdir -p $d; t0=$SECONDS
  timeout -s KILL $lim python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 1 --engine-procs auto --front-procs 6 --tokens 1e7 --out $d "$@" > $d/log.txt 2>&1
  echo "e2e $name rc $? $((SECONDS-t0)) s"; pack; }
T0=$SECONDS
run full 270
run none 150 --parts engine,service --step-switch-interval none
left=$((575-(SECONDS-T0)))
[ $left -gt 100 ] && run default2 $left --parts engine,service
for n in full none default2; do [ -f $R/$n/log.txt ] && { echo "== $n"; grep -v "^ " $R/$n/log.txt | tail -14; }; done
