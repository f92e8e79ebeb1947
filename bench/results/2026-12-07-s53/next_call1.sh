#!/usr/bin/env bash
# Written in session 53 for the next session's first call (no kind named, so whichever card comes; carry [".whl",
# ".device/text", ".device/old"]).
# On an H200: call1.sh here, whose H200 branch runs issue 13's whole list (bench/model.py with its defaults under a
#   560 s limit; the K256 floor line needs about 0.79 ms at N64 x L512, read 0.891-0.913 on H200s in sessions 11-40).
# On any other card: session 52's next_call1.sh (the gRPC server's GC threshold alone, 700 against 20,000; its
#   header has the prediction and the rule). Read the half-load p99 of the "A" runs first: session 53's machine read
#   111-137 ms in every run (its load processes' own leg included), session 52's 48.6-52.5.
set -u
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
  bash bench/results/2026-12-07-s53/call1.sh
else
  bash bench/results/2026-12-07-s52/next_call1.sh
fi
