#!/usr/bin/env bash
# Session 14, issue 18: one run over every training source of .distill (the data the shipped model was
# distilled on), which with its teacher (.device/tf, built by `train_pack --sources <all ten> --out .device/tf`)
# passes one call's 64 MiB beside the tree. So three calls on one warm machine:
#   stage   carries .device/tf/data and copies it to /tmp/tf
#   fresh   carries .device/tf/teacher and manifest.json; first leg from the shipped weights
#   resume  the second leg from /tmp/ckpt (the lr schedule spans both legs)
set -u
source bench/device_env.sh
case $1 in
  stage) rm -rf /tmp/tf && mkdir -p /tmp/tf && cp -r .device/tf/data /tmp/tf/ && du -sh /tmp/tf/data
         nvidia-smi --query-gpu=name,memory.used --format=csv; exit 0 ;;
  fresh) cp -r .device/tf/teacher .device/tf/manifest.json /tmp/tf/ || exit 1; extra=--fresh ;;
  resume) extra= ;;
  stagew) mkdir -p /tmp/w && cp .device/w/*/* /tmp/w/ && ls -la /tmp/w; exit 0 ;;
  cont) cp -r .device/tf/teacher .device/tf/manifest.json /tmp/tf/ || exit 1; du -sh /tmp/tf/* /tmp/w
        python3 -m streamret.train.distill --data /tmp/tf --init /tmp/w --out $OUT/model --ckpt /tmp/ckpt2 --fresh \
          --minutes 8.3 --lr 1.1e-4 --warmup-frac 0.02 --doc-weight 0.5 --doc-lengths 2048,4096,8192,16384,32768 \
          --log-every 25 2>&1 | tee $OUT/train_cont.log | grep -v '^{"step"' | tail -25
        grep '^{"step"' $OUT/train_cont.log | tail -3; exit 0 ;;
  *) echo "usage: $0 stage|fresh|resume"; exit 2 ;;
esac
du -sh /tmp/tf/*
python3 -m streamret.train.distill --data /tmp/tf --init streamret/assets/default --out $OUT/model --ckpt /tmp/ckpt \
  $extra --minutes 8.3 --schedule-minutes 16.2 --lr 2e-4 --warmup-frac 0.03 --doc-weight 0.5 \
  --doc-lengths 2048,4096,8192,16384,32768 --log-every 25 2>&1 | tee $OUT/train_$1.log | grep -v '^{"step"' | tail -25
grep '^{"step"' $OUT/train_$1.log | tail -3
# After a lost machine (session 14: the second leg's call came after the idle release, /tmp/ckpt gone):
#   the first leg's weights (.device/w/a, .device/w/b: its fp16 shards, in two calls, each beside the tree),
#   the data (stage), then `cont`: the second leg from those weights, no optimizer state, the lr from where
#   the first leg stopped (1.1e-4) down the same cosine over 8.1 training minutes.
