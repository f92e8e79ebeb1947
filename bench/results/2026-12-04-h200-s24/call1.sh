#!/usr/bin/env bash
# Session 24 call 1 (issue 14): is the host's CPU the engine's bound at 1,024 streams? Session 23 read 2.4-2.6 us
# of CPU a token over all processes (tokenizer processes 1.4-1.8 of it) at 12-13 of 16 cores busy, while on the
# 2-core workplace VM, unloaded, a tokenizer process costs 0.46-0.65 us a token.
# 1. bench/tokenize_cost.py: a tokenizer process's CPU a token with 1, 8 and 16 running at once.
#    Predicted: 1 copy 0.5-0.7 us, 16 copies 1.0-1.5 us (shared cores), i.e. at most 11-16 M tok/s for
#    tokenizing alone on 16 cores.
# 2. The engine parts with --step-samples 1 (the step loop's new `idle` part and the load's legs, not yet run on
#    a GPU). Predicted: ack -> next chunk sent p50 < 5 ms (the load is not the bound); idle 20-60% at 1,024.
# 3. --engine-procs 4, 8, 16 against auto (12) at 1,024 streams. Predicted: 8 within +-10% of 12; 4 -15-30%.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
lscpu | grep -E "Model name|^CPU\(s\)|Thread|Core|Socket|MHz" | head -8
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 120 python3 bench/tokenize_cost.py --text .device/text/man.txt.gz --copies 1,8,16 --mb 0.5 --out $OUT/tokcost 2>&1 | tail -6
echo "tokcost $((SECONDS-T0)) s"
run(){ name=$1; limit=$2; shift 2; d=$OUT/$name; mkdir -p $d; t0=$SECONDS
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL $limit python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.5 --parts engine "$@" --out $d > $d/log.txt 2>&1
  echo "$name rc $? $((SECONDS-t0)) s"; sed -n '/^part /,/^$/p' $d/log.txt | cut -c1-190; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12; }
run base 150 --engine-procs auto --step-samples 1
sed -n '/by part, wall/,$p' $OUT/base/log.txt | cut -c1-200 | head -90
for p in 8 4 16; do run procs$p 80 --engine-procs $p --streams 1024; done
run procs12 80 --engine-procs auto --streams 1024
tar czf $OUT/tcache.tgz .tcache
echo "total $((SECONDS-T0)) s"
