#!/usr/bin/env bash
# Written in session 40 for a later session, on an H200 (issue 13's ratios are set there; about 300 s): the tile
# sweep of bench/kernels.py at the K <= 128 streaming shapes, where session 40 read 1.76x (K128) and 1.70x (K64) of
# fla at N256 x L128 against the 1.8x issue 13 asks (ours 0.345 / 0.250 ms as in session 11; fla 0.606 / 0.425 where
# session 11 read 0.952 for K128). To reach 1.8x ours needs -2% (K128) and -6% (K64) at that shape. Predicted: a
# variant 3-10% faster than the planned config at N256 x L128 for K64 (pipeline depth or BV), none beyond 3% for
# K128; N64 x L512 keeps its config (timed beside it, so that a change there is not bought with a loss here).
set -u
T0=$SECONDS
source bench/device_env.sh  # (also Triton's cache: .tcache, unpacked from a carried .device/old/tcache.tgz)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
k=$OUT/sweep; mkdir -p $k
timeout -s KILL 480 python3 bench/kernels.py --layouts H8K128V256 H16K64V128 --shapes N256xL128 N64xL512 --sweep \
  --out $k > $k/log.txt 2>&1
echo "sweep rc $? $((SECONDS-T0)) s"; grep -A12 "Traceback" $k/log.txt | head -12
tail -12 $k/log.txt | cut -c1-160
python3 - $k/kernels.json <<'PY'
import json, sys
for row in json.load(open(sys.argv[1])).get("rows", []):
    sw = sorted(row.get("sweep", []), key=lambda r: r["ms"])[:3]
    print(row.get("case"), "ours", row.get("ours_ms"), "fla", row.get("fla_ms"), "best:",
          [(round(r["ms"], 4), {k: v for k, v in r["config"].items() if k in ("BT", "BV", "num_warps", "num_stages", "split_bf16")}) for r in sw])
PY
