#!/usr/bin/env bash
# Session 55, for the next session's first call (no kind named; carry [".whl", ".device/text", ".device/old",
# ".device/ab_base"]; about 260 s): call_split.sh here, the A/B of WorkItem.split_after on the engine and batch
# parts, on whatever card comes (its header has the prediction and the rule). On an H200, make issue 13's whole list
# (session 53's call1.sh, up to 560 s) the next call on the same warm machine.
set -u
nvidia-smi --query-gpu=name --format=csv,noheader
bash bench/results/2026-12-07-s55/call_split.sh
