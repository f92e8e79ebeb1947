#!/usr/bin/env bash
# Session 13, issue 18: one leg of a chained run. $1 = fresh|resume. Both legs share /tmp/ckpt on one warm machine;
# the lr schedule spans both legs (--schedule-minutes 12.6).
set -u
source bench/device_env.sh
extra=""; [ "$1" = fresh ] && extra="--fresh"
python3 -m streamret.train.distill --data .train --init streamret/assets/default --out $OUT/model --ckpt /tmp/ckpt $extra \
  --minutes 6.5 --schedule-minutes 12.6 --lr 2e-4 --warmup-frac 0.03 --doc-weight 0.5 \
  --doc-lengths 2048,4096,8192,16384,32768 --log-every 25 2>&1 | tee $OUT/train_$1.log | grep -v "^step" | tail -25
grep "^step" $OUT/train_$1.log | tail -4
