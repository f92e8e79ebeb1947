#!/usr/bin/env bash
# Session 37, sixth call, on the machine call5.sh left warm: 9 and then 12 engines back to back (one pair, no
# alternation: the device time left allowed no more). As run (one line there).
T0=$SECONDS; source bench/device_env.sh; export TRITON_CACHE_DIR=$PWD/.tcache; for n in 9 12; do d=$OUT/e$n; mkdir -p $d; timeout -s KILL 50 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,engine --engine-procs $n --out $d > $d/log.txt 2>&1; echo "$n rc $? $((SECONDS-T0)) s"; python3 bench/e2e_brief.py $d; done
