#!/usr/bin/env bash
# Session 59, call 5 (carry [".whl", ".device"] with .device/ab_nosplit: this tree's streamret, bench, kernels and
# pyproject.toml with Intake._split_after returning False, as before session 55; about 230 s): WorkItem.split_after
# alone, A off / B on, bench/e2e_ab.py --a-tree over --parts packed,engine, no warm-up run (the machine is warm).
# Why: session 57's call1.sh read engine_64 -7.2% and -7.0% for this tree against 7faefb4 (the commit before
# split_after), which also holds sessions 56-58's other changes; this reads split_after apart from them.
# Predicted (session 55's): engine 64 within 5%, engine 1,024 +10-30%.
# Rule: split_after stays unless engine 1,024 reads lower in both pairs or engine 64 more than 5% lower in both.
set -u
source bench/device_env.sh
python3 bench/e2e_ab.py --a-tree .device/ab_nosplit --pairs 2 --timeout 80 --out $OUT -- \
  --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,engine --engine-procs auto
