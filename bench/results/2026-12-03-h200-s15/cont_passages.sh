source bench/device_env.sh
python3 -m streamret.train.distill --data .train --init .device/x_passages --out /tmp/m_p2 --ckpt /tmp/ckpt_p2 --fresh --minutes 4.5 --lr 1.5e-4 --warmup-frac 0.03 --doc-tokens 0 --log-every 25 2>&1 | tee $OUT/train_p2.log | grep -v '^{"step"' | tail -4
python3 -m streamret.train.export /tmp/m_p2 --dst $OUT/x_p2 | tail -1
