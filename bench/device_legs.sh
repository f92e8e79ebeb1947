#!/usr/bin/env bash
# Passage-only training legs of the default model on the GPU machine, one device call each, chained at once on
# one warm machine (it is released after 30 s idle, taking /tmp with it). PACK is a folder built by
# `python -m streamret.train.train_pack --out PACK` (default .device/tf, the ten sources of session 14); its
# data may be split into parts (PACK/data_a, PACK/data_b, ...) when data and teacher do not fit one call's
# 64 MiB beside the tree. Each call's carry:
#   stage [PART]   carries PACK/PART (default PART: data); copies its files to /tmp/tf/data
#   part FILE      carries FILE, one part of a pack cut by bench/stage_parts.sh (a tree of 50 MiB leaves a call
#                  about 13 MiB: too little for a teacher); appends it to /tmp/pack.tar. After the last part:
#   unpack         carries nothing; lays /tmp/pack.tar out as /tmp/tf (data, teacher, manifest.json)
#   teacher        carries PACK/teacher and PACK/manifest.json; copies them to /tmp/tf (for a doc leg without legs)
#   fresh          carries PACK/teacher and PACK/manifest.json; leg 1 from the shipped weights
#   resume         carries nothing; leg 2 from /tmp/ckpt (the lr schedule spans both legs)
#   eval           carries .quality/heldout and .device/qT: quality.py's student phase on the GPU for the
#                  shipped model and for the legs' weights, side by side (~70 s)
#   doc            carries .quality/heldout and .device/qT; from INIT (default: the legs' merged weights; e.g.
#                  streamret/assets/default after stage and teacher calls) a short leg (MINUTES,
#                  default 4.5) with the document InfoNCE at weight DOC_NCE (default 0.05; query passages
#                  fixed; DOC_GROUP documents of a step from one folder, then its source, default 8; DOC_MAP a
#                  document map the InfoNCE scores documents through, e.g. streamret/assets/default), then its
#                  evaluation (the new weights have no map of their own: fit one here and evaluate again for the
#                  document role)
#   metric         carries .quality/heldout and .device/qT; from INIT (default: the shipped weights) a passage
#                  leg (MINUTES, default 8.0; LR, default 1e-4) whose errors are also measured in the teacher's
#                  metric (METRIC: a map of `python -m streamret.train.document_map --teacher ... --power 0.5`;
#                  default /tmp/tf/metric, put in the pack before it is cut) at weight METRIC_W (default 1.0),
#                  then the new weights' document map fitted on the GPU and their evaluation in both roles
#   passage        as metric, with the passage InfoNCE at weight PNCE (default 0.05) in place of the metric term
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
merge() {  # the distill's fp16 shards in $1 -> one model folder $2
  python3 -m streamret.train.export "$1" --dst "$2" > /tmp/export.log 2>&1 || { cat /tmp/export.log; return 1; }
}
evaluate() {  # quality.py's student phase for each model named; only each result's JSON comes back (a call
  # returns eight files at most, and a model's shards are six)
  for m in "$@"; do
    local name; name=$(basename $m)
    python3 bench/quality.py student --data .quality/heldout --teacher-out .device/qT --model $m --device cuda \
      --no-engine --out-dir /tmp/eval/S_$name 2> /tmp/eval_$name.log | tail -14 || tail -5 /tmp/eval_$name.log
    cp /tmp/eval/S_$name/quality_cuda.json $OUT/quality_cuda_$name.json
  done
}
stage_teacher() { mkdir -p /tmp/tf && cp -r "$PACK/teacher" "$PACK/manifest.json" /tmp/tf/; }
staged() {  # every source of the pack copied to /tmp/tf/data
  [ -f /tmp/tf/manifest.json ] || { echo "no /tmp/tf/manifest.json: the fresh or teacher call copies it (a released machine" \
    "loses it: start again from stage)"; return 1; }
  local want; want=$(python3 -c "import json; print(len(json.load(open('/tmp/tf/manifest.json'))['sources']))")
  [ "$(ls /tmp/tf/data | wc -l)" = "$want" ] || { echo "the pack has $want sources, /tmp/tf/data has" \
    "$(ls /tmp/tf/data | wc -l): stage every part first"; return 1; }
}
train() {  # $1 names the log; the rest are distill's arguments
  local log=$1; shift
  python3 -m streamret.train.distill --data /tmp/tf --warmup-frac 0.03 --log-every 25 "$@" 2>&1 \
    | tee $OUT/train_$log.log | grep -v '^{"step"' | tail -8
}
case $1 in
  stage) mkdir -p /tmp/tf/data && cp "$PACK/${2:-data}"/* /tmp/tf/data/ && ls /tmp/tf/data | wc -l && du -sh /tmp/tf/data ;;
  part)  # a pack too large for the calls beside the tree travels as a tar cut into parts (bench/stage_parts.sh),
    # one a call, in order: each is appended to /tmp/pack.tar; `unpack` then lays the pack out in /tmp/tf
    cat "$2" >> /tmp/pack.tar && ls -la /tmp/pack.tar ;;
  unpack)
    mkdir -p /tmp/tf && tar xf /tmp/pack.tar -C /tmp/tf && rm /tmp/pack.tar && staged && du -sh /tmp/tf/* ;;
  fresh|resume)
    if [ $1 = fresh ]; then stage_teacher || exit 1; fi
    staged || exit 1
    train $1 --init streamret/assets/default --out /tmp/m_all --ckpt /tmp/ckpt $([ $1 = fresh ] && echo --fresh) \
      --minutes ${MINUTES:-8.8} --schedule-minutes ${SCHEDULE:-17.6} --lr 2e-4 --doc-tokens 0
    cp -r /tmp/m_all $OUT/model
    if [ "${EVAL:-0}" = 1 ] && [ $1 = resume ]; then merge /tmp/m_all /tmp/x_all && evaluate /tmp/x_all; fi ;;
  eval) merge /tmp/m_all /tmp/x_all && evaluate default /tmp/x_all ;;
  teacher) stage_teacher && du -sh /tmp/tf/teacher ;;
  doc)  # a short leg with the document InfoNCE (weight DOC_NCE, default 0.05) from INIT (default: the legs' weights)
    init=${INIT:-/tmp/x_all}
    if [ "$init" = /tmp/x_all ] && [ ! -d /tmp/x_all ]; then merge /tmp/m_all /tmp/x_all || exit 1; fi
    staged || exit 1
    train doc --init "$init" --out /tmp/m_doc --ckpt /tmp/ckpt_doc --fresh --minutes ${MINUTES:-4.5} --lr 1e-4 \
      --doc-tokens 65536 --doc-nce-weight ${DOC_NCE:-0.05} --doc-query-grad 0 --doc-group ${DOC_GROUP:-8} \
      ${DOC_MAP:+--doc-map $DOC_MAP}
    cp -r /tmp/m_doc $OUT/model && merge /tmp/m_doc /tmp/x_doc && evaluate /tmp/x_doc ;;
  metric|passage)  # a passage leg from INIT (default: the shipped weights), then the new weights' own document
    # map fitted here on the GPU from the pack's training sources, and their evaluation in both roles. metric: with
    # the metric term (METRIC_W, default 1.0) in the teacher's map at METRIC (default /tmp/tf/metric: the pack
    # carries it); passage: with the passage InfoNCE at weight PNCE (default 0.05)
    staged || exit 1
    if [ "$1" = metric ]; then extra="--metric ${METRIC:-/tmp/tf/metric} --metric-weight ${METRIC_W:-1.0}"
    else extra="--passage-nce-weight ${PNCE:-0.05}"; fi
    train $1 --init ${INIT:-streamret/assets/default} --out /tmp/m_$1 --ckpt /tmp/ckpt_$1 --fresh \
      --minutes ${MINUTES:-8.0} --lr ${LR:-1e-4} --doc-tokens 0 $extra
    cp -r /tmp/m_$1 $OUT/model && merge /tmp/m_$1 /tmp/x_$1 || exit 1
    python3 -m streamret.train.document_map --distill /tmp/tf --model /tmp/x_$1 --device cuda 2>&1 | tail -1
    evaluate /tmp/x_$1 ;;
  *) echo "usage: $0 stage [PART] | part FILE | unpack | teacher | fresh | resume | eval | doc | metric | passage"; exit 2 ;;
esac
