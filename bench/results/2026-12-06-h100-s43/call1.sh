#!/usr/bin/env bash
# Written in session 42 for the next session's first call (on an H200 if one comes; about 450 s warm, more where
# the carried Triton cache lacks fla's kernels or the split-off variants): issue 13's whole list from one command,
# after the bf16 split went off by default (session 42), sections in the order that matters most if the call is cut
# short (check, parity and kernels first; profile left out), then Triton's cache returned for later calls
# (copy $OUT/tcache.tgz to .device/old/tcache.tgz).
# Predicted on an H200 (session 40 read, split on: K64 / K128 N256 x L128 1.70x / 1.76x, K256 N64 x L512 1.49x and
# 34.7% of its floor, 1.3B 1.116x / 1.120x, small 2.58x / 2.13x, default 19.12 / 8.66 M tok/s): N256 x L128
# 1.78-1.90x at both (the H100 read -7.4% / -3.6% for ours with the split off), N64 x L512 +5-10%, K256 within 2% of
# 0.913 ms (34-36% of its floor: still a miss), the model lines within 2% of session 40's (the split is a few
# percent of a kernel that is 11-13% of the forward); fla_parity PASS (float32 <= 1e-4, bf16 <= 2e-2) and the checks ok.
set -u
T0=$SECONDS
source bench/device_env.sh
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
mkdir -p $OUT/model
timeout -s KILL 500 python3 bench/model.py --out $OUT/model --sections check,parity,kernels,model,default,graph \
  > $OUT/model/log.txt 2>&1
echo "model.py rc $? $((SECONDS-T0)) s"
grep -E "^(check|model|default|minilm|graph|\[)|PASS|FAIL" $OUT/model/log.txt | cut -c1-170
grep -A12 "^case" $OUT/model/log.txt | cut -c1-150 | head -14
tail -25 $OUT/model/log.txt | cut -c1-170
tar czf $OUT/tcache.tgz .tcache && ls -la $OUT/tcache.tgz
