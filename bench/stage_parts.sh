#!/usr/bin/env bash
# Cut a training pack (streamret.train.train_pack's folder: data/, teacher/, manifest.json) into parts that each
# fit one device call beside the tracked tree, for `bench/device_legs.sh part FILE` (one call a part, in order)
# and `bench/device_legs.sh unpack`:
#   bash bench/stage_parts.sh PACK OUTDIR [MiB]     # default 12 MiB a part
# It prints the calls to make.
set -eu
pack=$1 out=$2 mib=${3:-12}
[ -f "$pack/manifest.json" ] || { echo "$pack has no manifest.json: build it with python -m streamret.train.train_pack"; exit 2; }
rm -rf "$out" && mkdir -p "$out"
tar cf - -C "$pack" . | split -b "${mib}M" - "$out/pack.tar."
for f in "$out"/pack.tar.*; do
  echo "bash bench/device_legs.sh part $f    carry [\"$f\"]"
done
echo "bash bench/device_legs.sh unpack    carry []"
