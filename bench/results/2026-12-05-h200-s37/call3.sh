#!/usr/bin/env bash
# Session 37, third call, on the machine call2.sh leaves warm (its .tcache stays there: do not
# carry .tcache).
# bench/model.py, issue 13's command, without its profile and fla parity (fla's kernels compile cold: 272 s in
#    session 11): check, the model against fla, the default model against MiniLM, the graph forward, the K256 and
#    K64 kernels at N64 x L512. Predicted on an H200 as sessions 11-12 read (K256 0.89 ms, 1.51x fla, 35% of the
#    floor; 1.3B forward 1.09-1.12x fla). On an H100 the figures are that card's, not issue 13's (H200).
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS; m=$OUT/model; mkdir -p $m
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 420 python3 bench/model.py --sections check,model,default,graph,kernels \
  --kernel-args "--layouts H8K256V512 H16K64V128 --shapes N64xL512" --out $m > $m/log.txt 2>&1
echo "model rc $? $((SECONDS-T0)) s"; grep -A12 "Traceback" $m/log.txt | head -12
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
tail -40 $m/log.txt | cut -c1-200
tar czf $OUT/all.tgz -C $OUT model && rm -rf $OUT/model
echo "total $((SECONDS-T0)) s"
