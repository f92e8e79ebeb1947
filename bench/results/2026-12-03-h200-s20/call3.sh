# session 20, call 3: the intra_first walker with a transposed state (k10.py)
# (k10.py is kept beside this file as k10.py.txt since the revert; it ran at the commit that added it)
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
timeout 300 python3 bench/results/2026-12-03-h200-s20/k10.py 2>&1 | tee $OUT/k10_log.txt | grep -v -i warn
