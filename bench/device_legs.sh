#!/usr/bin/env bash
# Passage-only training legs of the default model on the GPU machine, one device call each, chained at once on
# one warm machine (it is released after 30 s idle, taking /tmp with it). PACK is a folder built by
# `python -m streamret.train.train_pack --out PACK` (default .device/tf, the ten sources of session 14); its
# data may be split into parts (PACK/data_a, PACK/data_b, ...) when data and teacher do not fit one call's
# 64 MiB beside the tree. Each call's carry:
#   stage [PART]   carries PACK/PART (default PART: data); copies its files to /tmp/tf/data
#   fresh          carries PACK/teacher and PACK/manifest.json; leg 1 from the shipped weights
#   resume         carries nothing; leg 2 from /tmp/ckpt (the lr schedule spans both legs)
#   eval           carries .quality/heldout and .device/qT: quality.py's student phase on the GPU for the
#                  shipped model and for the legs' weights, side by side (~70 s)
# A leg is MINUTES (default 8.8) of wall time, its lr schedule SCHEDULE (default 17.6) training minutes over
# all legs (a call may run 600 s; an 8.8-minute leg ends at about 535 s: run it with timeout_s 600).
# EVAL=1 on resume evaluates the legs' weights in the same call (carry .quality/heldout and .device/qT with
# it; give the leg MINUTES=8.0 to leave the evaluation its ~45 s): in session 17 the machine was released
# between the resume call and the eval call, taking the weights in /tmp with it.
# Weights come back as the distill's own fp16 shards ($OUT/model/model-0000N-of-00003, under 16 MiB each): a
# merged model.safetensors (38 MB) is over the 16 MiB a returned file may have and does not come back.
# Session 16 ran its first form (bench/results/2026-12-03-h200-s16/run.sh at 991bb46: the same legs and
# evaluation over .device/tf, its data in one part, no source count check).
set -u -o pipefail
source bench/device_env.sh
PACK=${PACK:-.device/tf}
evaluate() {  # the legs' weights merged to /tmp/x_all, then quality.py's student phase for each model named;
  # only each result's JSON comes back (a call returns eight files at most, and the model's shards are six)
  python3 -m streamret.train.export /tmp/m_all --dst /tmp/x_all > /tmp/export.log 2>&1 || { cat /tmp/export.log; return 1; }
  for m in "$@"; do
    local name; name=$(basename $m)
    python3 bench/quality.py student --data .quality/heldout --teacher-out .device/qT --model $m --device cuda \
      --no-engine --out-dir /tmp/eval/S_$name 2> /tmp/eval_$name.log | tail -14 || tail -5 /tmp/eval_$name.log
    cp /tmp/eval/S_$name/quality_cuda.json $OUT/quality_cuda_$name.json
  done
}
case $1 in
  stage) mkdir -p /tmp/tf/data && cp "$PACK/${2:-data}"/* /tmp/tf/data/ && ls /tmp/tf/data | wc -l && du -sh /tmp/tf/data
         exit 0 ;;
  fresh) cp -r "$PACK/teacher" "$PACK/manifest.json" /tmp/tf/ || exit 1; extra=--fresh ;;
  resume) extra= ;;
  eval) evaluate default /tmp/x_all; exit ;;
  *) echo "usage: $0 stage [PART] | fresh | resume | eval"; exit 2 ;;
esac
want=$(python3 -c "import json; print(len(json.load(open('/tmp/tf/manifest.json'))['sources']))")
[ "$(ls /tmp/tf/data | wc -l)" = "$want" ] || { echo "the pack has $want sources, /tmp/tf/data has" \
  "$(ls /tmp/tf/data | wc -l): stage every part first"; exit 1; }
python3 -m streamret.train.distill --data /tmp/tf --init streamret/assets/default --out /tmp/m_all --ckpt /tmp/ckpt \
  $extra --minutes ${MINUTES:-8.8} --schedule-minutes ${SCHEDULE:-17.6} --lr 2e-4 --warmup-frac 0.03 --doc-tokens 0 --log-every 25 \
  2>&1 | tee $OUT/train_$1.log | grep -v '^{"step"' | tail -8
cp -r /tmp/m_all $OUT/model
[ "${EVAL:-0}" = 1 ] && [ "$1" = resume ] && evaluate /tmp/x_all
exit 0
