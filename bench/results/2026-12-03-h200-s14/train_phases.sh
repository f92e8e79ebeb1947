#!/usr/bin/env bash
# Session 14, issue 18: where a training step's time goes (distill --phase-times), at the document block of the
# runs so far (1024) and at 2048 and 4096 (the document phase re-runs its blocks one after another). .train carried.
set -u
source bench/device_env.sh
for blk in 1024 2048 4096; do
  m=1.0; [ $blk = 1024 ] && m=1.6
  python3 -m streamret.train.distill --data .train --init streamret/assets/default --out /tmp/p$blk --ckpt /tmp/pc$blk \
    --fresh --minutes $m --lr 2e-4 --warmup-frac 0.03 --doc-weight 0.5 --doc-lengths 2048,4096,8192,16384,32768 \
    --doc-block $blk --log-every 10 --phase-times > $OUT/phases_$blk.log 2>&1
  echo "== doc block $blk"; grep '^{"step"' $OUT/phases_$blk.log | tail -2 | python3 -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    print(r["step"], r["tok_per_s"], r["doc_tok_per_s"], r["peak_gib"], r["phase_ms"])'
done
