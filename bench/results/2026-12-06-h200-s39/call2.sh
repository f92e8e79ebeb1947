#!/usr/bin/env bash
# Session 39, second call (on the machine call1.sh leaves warm, or with .device/old/tcache.tgz from it): pool_ab.sh
# (pool_runs against the tree before it, prediction and rule in its header), then session 38's next_call4.sh (the
# whole e2e list on this tree, reading keep_segments, the batch start stamps and now pool_runs; predictions there;
# pool_runs adds: the step thread's launch CPU a step at 64 streams -0.1 to -0.3 ms, at half load the ack p99 within
# its spread or lower).
set -u
T0=$SECONDS
bash bench/results/2026-12-06-h200-s39/pool_ab.sh
bash bench/results/2026-12-05-h200-s38/next_call4.sh
echo "call total $((SECONDS-T0)) s"
