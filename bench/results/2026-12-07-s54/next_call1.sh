#!/usr/bin/env bash
# Written in session 54 for the next session's first call (no kind named; carry [".whl", ".device/text",
# ".device/old"]).
# On an H200: issue 13's whole list (session 53's call1.sh: bench/model.py with its defaults under a 560 s limit).
# On any other card: this tree's whole e2e list with its defaults, a warm-up run (batch parts, not read) and two runs
# (about 300 s): where issue 14's lines stand with the batch parts encoded as their rows come back and the 3 ms join
# wait (session 54's A/Bs read them on the parts they touch only). Expected against session 54's call 1 A runs
# (same card kind): batch short +5-15% (0.379 / 0.465 there), the half-load ack p99 near 53 ms, the rest within the
# machines' spread.
set -u
if nvidia-smi --query-gpu=name --format=csv,noheader | grep -q H200; then
  bash bench/results/2026-12-07-s53/call1.sh
else
  source bench/device_env.sh
  for r in warm run1 run2; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
    if [ $r = warm ]; then extra="--parts packed,batch --packed-seconds 0.3"; else extra="--packed-seconds 1"; fi
    timeout -s KILL 150 python3 bench/e2e.py --text .device/text/man.txt.gz --engine-procs auto --front-procs 6 \
      --short-docs 8000 $extra --out $d > $d/log.txt 2>&1
    echo "$r rc $? $((SECONDS-t0)) s"
  done
  python3 bench/e2e_brief.py $OUT/run1 $OUT/run2
  (cd $OUT && tar czf all.tgz warm run1 run2 && rm -rf warm run1 run2)
fi
