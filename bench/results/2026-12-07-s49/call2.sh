#!/usr/bin/env bash
# Session 49, call 2 (for a start with under 400 s of device time left): the K256 N64 x L512 forward in each output
# form as pick_config plans it (STREAMRET_TWO_PASS_FORM=scores, then keys with KEYS_TILING, then scores again to
# read the drift), bench/kernels.py without the sweep and without fla: each run checks ours against float64 first,
# then times it; only two tilings compile, so a cold Triton cache costs far less than the sweep (call1.sh).
# FORMS and LIMIT (seconds a run) change the runs (call3.sh).
# Predicted on an H200 as in session 48's call2.sh: scores 0.89-0.92 ms, keys 0.68-0.85 (under 0.79: issue 13's
# 40% of the floor); on an H100 scores 1.05-1.06, keys 0.80-1.00. err_o of both 2.4-2.8e-3.
set -u
T0=$SECONDS
source bench/device_env.sh
for f in ${FORMS:-scores keys scores}; do
  d=$OUT/$f$SECONDS; mkdir -p $d
  STREAMRET_TWO_PASS_FORM=$f timeout -s KILL ${LIMIT:-140} python3 bench/kernels.py --out $d --layouts H8K256V512 \
    --shapes N64xL512 --no-fla > $d/log.txt 2>&1
  echo "$f rc $? $((SECONDS-T0)) s"
  STREAMRET_TWO_PASS_FORM=$f python3 -c "import torch; from streamret_kernels.chunk_retention.triton_fwd import pick_config as p; c = p(256, 512, torch.bfloat16, 512); print(' planned', type(c).__name__, getattr(c, 'output_form', None), c.BT, c.BV, getattr(c, 'key_block', None), c.state_every)"
  grep -E "N64xL512|err|Error" $d/log.txt | tail -4 | cut -c1-180
done
