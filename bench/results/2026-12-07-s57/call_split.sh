#!/usr/bin/env bash
# Session 57, for a smaller budget (no kind or any; carry [".whl", ".device"]; about 260-300 s): session 55's
# call_split.sh alone (the A/B of WorkItem.split_after against the commit before it, .device/ab_base; its header
# gives the prediction and the rule) with SHORT_DOCS=6000, into $OUT, then the Triton cache this machine compiled
# into $OUT/tcache.tgz (this checkout had lost .device/old: the warm-up run compiles cold).
set -u
SHORT_DOCS=6000 bash bench/results/2026-12-07-s55/call_split.sh
[ -d .tcache ] && tar czf $OUT/tcache.tgz --exclude='*.ptx' --exclude='*.ttir' --exclude='*.ttgir' \
  --exclude='*.llir' --exclude='*.source' .tcache && du -h $OUT/tcache.tgz
