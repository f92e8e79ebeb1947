#!/usr/bin/env bash
# Session 11 call 4 (issue 13): K256 two-pass tilings with h0 (k4.py), bench/kernels.py through bench/model.py, parity.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=/tmp/tc; mkdir -p /tmp/tc
if [ -f .tcache/tc.tar.xz ] && [ ! -f /tmp/tc/.unpacked ]; then tar xJf .tcache/tc.tar.xz -C /tmp && touch /tmp/tc/.unpacked; fi
R=/tmp/res4; mkdir -p $R
pack(){ tar czf $OUT/res4.tgz -C $R . ; }
T0=$SECONDS
OUT=$R timeout -s KILL 150 python3 .device/k4.py > $R/k4_log.txt 2>&1; echo "k4 rc $? $((SECONDS-T0)) s"; pack
t0=$SECONDS; mkdir -p $R/k
timeout -s KILL 170 python3 bench/model.py --out $R/k --sections kernels --kernel-args "--layouts H8K256V512 H16K64V128 --shapes N64xL512" > $R/k_log.txt 2>&1
echo "kernels rc $? $((SECONDS-t0)) s"; pack
left=$((560-(SECONDS-T0))); t0=$SECONDS; mkdir -p $R/p
[ $left -gt 60 ] && { timeout -s KILL $left python3 bench/model.py --out $R/p --sections parity > $R/p_log.txt 2>&1; echo "parity rc $? $((SECONDS-t0)) s"; pack; }
cat $R/k4_log.txt | grep -v "^ " | tail -12
grep -v "^ " $R/k_log.txt | tail -8
tail -4 $R/p_log.txt
