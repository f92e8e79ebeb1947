#!/usr/bin/env bash
# Session 55, the call after the split_after change (no kind named; carry [".whl", ".device/text", ".device/old",
# ".device/ab_base"]). On an H200: issue 13's whole list (session 53's call1.sh). On any other card: call_split.sh.
set -u
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
  bash bench/results/2026-12-07-s53/call1.sh
else
  bash bench/results/2026-12-07-s55/call_split.sh
fi
