#!/usr/bin/env bash
# Session 56, call 2 (the machine of call 1, warm; carry [".whl", ".device/text", ".device/old"]).
# On an H200: issue 13's whole list, bench/model.py with its defaults under a 560 s limit (session 53's call1.sh;
#   the first H200 reading since session 42 turned the bf16 split off: from the H100's -3.6% / -7.4% at N256 x L128,
#   K128 and K64 are predicted at about 1.82x / 1.84x fla there, over the 1.8x they missed in session 40 (1.76x /
#   1.70x); K256 N64 x L512 about 35% of the H200's bytes floor, still under its 40%).
# On any other card: call3.sh here (a GPU step's budget of 65,536 tokens against 32,768; its header has the
#   prediction and the rule; about 260 s). Call 1 ran the sub-batches A/B already.
set -u
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
  bash bench/results/2026-12-07-s53/call1.sh
else
  bash bench/results/2026-12-07-s56/call3.sh
fi
