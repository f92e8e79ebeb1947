#!/usr/bin/env bash
# For the next session (written in session 37, not run yet): issue 13's list from one command needs a warm Triton
# cache, as fla's kernels compile cold in minutes (the model section 261 s in session 37, its parity 272 s in session
# 11), which with everything else passes a call's 600 s. This call only compiles: three bench/model.py runs at once
# (compiling is CPU work, one core each; their timings are not figures), into the .tcache on the machine, which
# next_call2.sh then uses on the same warm machine. Carry .whl and .device/old (the packed cache of our kernels).
set -u
T0=$SECONDS
[ -f .device/old/tcache.tgz ] && tar xzf .device/old/tcache.tgz
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
w=$OUT/warm; mkdir -p $w/a $w/b $w/c
timeout -s KILL 540 python3 bench/model.py --sections parity --out $w/a > $w/a/log.txt 2>&1 &
timeout -s KILL 540 python3 bench/model.py --sections model --presets fla-1.3b --rounds 1 --out $w/b > $w/b/log.txt 2>&1 &
timeout -s KILL 540 bash -c "python3 bench/model.py --sections model --presets small --rounds 1 --out $w/c && \
  python3 bench/model.py --sections kernels --out $w/c" > $w/c/log.txt 2>&1 &
wait
echo "warm $((SECONDS-T0)) s"; for x in a b c; do echo "== $x"; tail -4 $w/$x/log.txt | cut -c1-200; done
du -sh .tcache
