#!/usr/bin/env bash
# Session 16, issue 18: the call that ran in the device time left after run.sh (now bench/device_legs.sh; the
# machine still warm, so /tmp/tf and its eval's exported /tmp/x_all were there): a third leg from the two legs' weights, then its
# evaluation. Its shards did not all come back (a call returns at most eight files), so it is evaluated only.
source bench/device_env.sh; ls /tmp/x_all >/dev/null || exit 3; python3 -m streamret.train.distill --data /tmp/tf --init /tmp/x_all --out /tmp/m_3 --ckpt /tmp/ckpt3 --fresh --minutes 5.3 --lr 1e-4 --warmup-frac 0.03 --doc-tokens 0 --log-every 25 2>&1 | tee $OUT/train_leg3.log | grep -v '^{"step"' | tail -3; cp -r /tmp/m_3 $OUT/model; python3 -m streamret.train.export /tmp/m_3 --dst /tmp/x_3 > $OUT/export3.log 2>&1 && python3 bench/quality.py student --data .quality/heldout --teacher-out .device/qT --model /tmp/x_3 --device cuda --no-engine --out-dir $OUT/S_x3 2> $OUT/S_err_x3.log | tail -9
