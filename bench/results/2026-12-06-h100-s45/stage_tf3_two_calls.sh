#!/usr/bin/env bash
# Session 45: the 37-source pack (.device/tf3, cut in five 12 MiB parts by bench/stage_parts.sh) staged in two calls
# instead of five: with the student's model.safetensors taken out of the working tree for these calls (rm here,
# git checkout after), the tree is 14 MiB and a call carries four parts.
#   bash bench/results/2026-12-06-h100-s45/stage_tf3_two_calls.sh 1   carry the parts aa ab ac ad
#   bash bench/results/2026-12-06-h100-s45/stage_tf3_two_calls.sh 2   carry the part ae (then unpack)
set -u -o pipefail
case $1 in
  1) for p in aa ab ac ad; do bash bench/device_legs.sh part .device/stage/tf3/pack.tar.$p || exit 1; done ;;
  2) bash bench/device_legs.sh part .device/stage/tf3/pack.tar.ae && bash bench/device_legs.sh unpack ;;
esac
