#!/usr/bin/env bash
# Session 53, call 1 (no kind named, so whichever card comes; carry [".whl", ".device/text", ".device/old"]).
# On an H200: issue 13's whole list, bench/model.py with its defaults (279 s on a warm H100 in session 45; fla's
#   kernels may compile cold), under a 560 s limit; it prints each section as it goes.
# On any other card: session 52's next_call2.sh with WHOLE=1024 first (its header has the prediction and the rule):
#   short documents at 0.457 of packed need +9.4% for their 0.50, inside 1024's predicted +5-12%; 512 is predicted
#   within 3% there. With 2 KB chunks (450-500 tokens) and the service's 512 B ones a step still holds 64 streams.
set -u
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
  source bench/device_env.sh
  timeout -s KILL 560 python3 bench/model.py --out $OUT > $OUT/model_log.txt 2>&1
  echo "model.py rc $?"; tail -60 $OUT/model_log.txt
else
  WHOLE=1024 bash bench/results/2026-12-07-s52/next_call2.sh
fi
