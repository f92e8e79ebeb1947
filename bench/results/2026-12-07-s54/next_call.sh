#!/usr/bin/env bash
# Session 54: the next call on whichever card comes (carry [".whl", ".device/text", ".device/old", ".device/ab_base"]).
# On an H200: issue 13's whole list (session 53's call1.sh: bench/model.py with its defaults under a 560 s limit).
# On any other card: call3.sh here (the batch changes' A/B; its header has the prediction and the rule); then, in
# the next call on the same machine, call2.sh (the tokenize join wait A/B).
set -u
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
  bash bench/results/2026-12-07-s53/call1.sh
else
  bash bench/results/2026-12-07-s54/call3.sh
fi
