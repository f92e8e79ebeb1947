#!/usr/bin/env bash
# Session 57, call 1 (no kind named; carry [".whl", ".device"]; about 500 s): session 56's call1.sh as it is (the
# split_after A/B, then, where under 300 s have passed, the sub-batches A/B; the headers there give the predictions
# and the rules), then the Triton cache this machine compiled, into $OUT/tcache.tgz, for the later calls (this
# checkout had lost .device/old, so the first run compiles cold).
set -u
bash bench/results/2026-12-07-s56/call1.sh
[ -d .tcache ] && tar czf $OUT/tcache.tgz --exclude='*.ptx' --exclude='*.ttir' --exclude='*.ttgir' \
  --exclude='*.llir' --exclude='*.source' .tcache && du -h $OUT/tcache.tgz
