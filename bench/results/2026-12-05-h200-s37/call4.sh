#!/usr/bin/env bash
# Session 37, fourth call, on the machine call3.sh left warm (call3's kernels section was cut by its 420 s cap: the
# model section compiled fla cold, 261 s). bench/model.py's kernels section alone, the .tcache of call3 on the machine.
source bench/device_env.sh; export TRITON_CACHE_DIR=$PWD/.tcache; m=$OUT/kern; mkdir -p $m; PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 280 python3 bench/model.py --sections kernels --kernel-args "--layouts H8K256V512 H16K64V128 --shapes N64xL512" --out $m > $m/log.txt 2>&1; echo "rc $?"; tail -30 $m/log.txt | cut -c1-220
