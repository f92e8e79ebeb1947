#!/usr/bin/env bash
# Session 52, call 1 (asked for nvidia-h200; whichever card comes). Carry [".whl", ".device/text", ".device/old"].
# On an H200: session 48's call1.sh (issue 13's kernel lines with fla at the three layouts; its header's prediction:
#   K64 / K128 at N256 x L128 1.77-1.86x / 1.78-1.85x, K256 N64 x L512 34-36% of its floor).
# Otherwise: session 51's next_call1.sh (the batch job's 8 MiB first part against none, batch parts, alternated
#   twice; its header's prediction: batch long +3-10%, short +2-6%; rule: the GPU default if both parts read
#   higher in both pairs).
set -u
source bench/device_env.sh
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
  bash bench/results/2026-12-07-s48/call1.sh
else
  bash bench/results/2026-12-07-s51/next_call1.sh
fi
