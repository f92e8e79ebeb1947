# session 20, call 2: the two-pass output pass on 64-row blocks of 4 warps (k9.py)
# (k9.py is kept beside this file as k9.py.txt since the revert; it ran at the commit that added it)
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
timeout 400 python3 bench/results/2026-12-03-h200-s20/k9.py 2>&1 | tee $OUT/k9_log.txt | grep -v -i warn
