#!/usr/bin/env bash
# For the next session, right after next_call1.sh on the same warm machine (do not carry .tcache: the machine's is
# warm). Issue 13's whole list from one command, as its acceptance asks: bench/model.py with its defaults (check,
# model, default, graph, profile, kernels, parity). Predicted with a warm cache: 200-350 s. On an H200, as sessions
# 11-12 read (1.3B 1.09-1.12x fla, small 2.0-2.4x, default 17 M tok/s at B256 x T256, K256 0.89 ms 1.51x fla at
# 35% of the floor: that line missed, K <= 128 >= 1.8x, parity PASS); on an H100 as session 37's call3/call4
# (1.3B 1.11-1.13x, K256 1.43x at 41% of that card's floor). Issue 13's acceptance is set on the H200.
set -u
T0=$SECONDS
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
m=$OUT/model; mkdir -p $m
timeout -s KILL 570 python3 bench/model.py --out $m > $m/log.txt 2>&1
echo "model rc $? $((SECONDS-T0)) s"; grep -A12 "Traceback" $m/log.txt | head -12
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
tail -45 $m/log.txt | cut -c1-220
tar czf $OUT/all.tgz -C $OUT model && rm -rf $OUT/model
