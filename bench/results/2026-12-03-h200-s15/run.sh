#!/usr/bin/env bash
# Session 15 (issue 18): session 14's next_session.sh, the shipped model's eval kept across calls. Three calls on one warm machine, .train carried:
#   phases   (~3 min) the document phase's graph-free pass, parallel against chunkwise (the engine's own path),
#            at the new default block 4096, with --phase-times; the chunkwise one with --profile-steps 5
#   passages (~7.5 min) a continued run without the document objective (--doc-tokens 0) from the shipped
#            weights: does the passage cosine rise above the shipped 0.812 when the document terms are gone?
#            Evaluate its $OUT/model on the CPU as in RESULTS (export, then bench/quality.py student).
#   queries  (~7.5 min) the document objective kept, its InfoNCE no longer moving the student's query passages
#            (--doc-query-grad 0): the passages stop crowding together (passage_geometry.py) if that term did it.
#   eval V   (~2-3 min, carry .quality/heldout and .device/qT, a copy of a CPU teacher phase's output such as
#            session 12's) right after run V on the same machine: bench/quality.py's student phase on the GPU
#            for the shipped model and for V's weights (/tmp/m_V), side by side (the CPU figures in RESULTS are
#            float32; compare V with the shipped model's GPU row of the same call).
set -u -o pipefail
source bench/device_env.sh
case $1 in
  phases)
    for fwd in parallel chunkwise; do
      extra=""; [ $fwd = chunkwise ] && extra="--profile-steps 5"
      python3 -m streamret.train.distill --data .train --init streamret/assets/default --out $OUT/p_$fwd \
        --ckpt /tmp/pc_$fwd --fresh --minutes 1.2 --lr 2e-4 --warmup-frac 0.03 --doc-weight 0.5 \
        --doc-lengths 2048,4096,8192,16384,32768 --doc-forward $fwd --log-every 10 --phase-times $extra \
        > $OUT/phases_$fwd.log 2>&1
      rm -f $OUT/p_$fwd/*.safetensors
      echo "== $fwd"; grep '^{"step"' $OUT/phases_$fwd.log | tail -2 | cut -c1-400
    done
    head -30 $OUT/p_chunkwise/profile.txt ;;
  passages)
    python3 -m streamret.train.distill --data .train --init streamret/assets/default --out /tmp/m_passages \
      --ckpt /tmp/ckpt_p --fresh --minutes 6.5 --lr 2e-4 --warmup-frac 0.03 --doc-tokens 0 --log-every 25 \
      2>&1 | tee $OUT/train_passages.log | grep -v '^{"step"' | tail -8
    cp -r /tmp/m_passages $OUT/model ;;
  queries)
    python3 -m streamret.train.distill --data .train --init streamret/assets/default --out /tmp/m_queries \
      --ckpt /tmp/ckpt_q --fresh --minutes 6.5 --lr 2e-4 --warmup-frac 0.03 --doc-weight 0.5 --doc-query-grad 0 \
      --doc-lengths 2048,4096,8192,16384,32768 --log-every 25 2>&1 | tee $OUT/train_queries.log | grep -v '^{"step"' | tail -8
    cp -r /tmp/m_queries $OUT/model ;;
  eval)
    python3 -m streamret.train.export /tmp/m_$2 --dst /tmp/x_$2 > $OUT/export.log 2>&1 || { cat $OUT/export.log; exit 1; }
    # the shipped model's row is evaluated once per warm machine and kept in /tmp
    for m in default /tmp/x_$2; do
      d=/tmp/S_$(basename $m)
      [ -f $d/done ] || { python3 bench/quality.py student --data .quality/heldout --teacher-out .device/qT --model $m \
        --device cuda --no-engine --out-dir $d 2> $OUT/S_err_$(basename $m).log | tail -14 > $d.table && touch $d/done; }
      cp -r $d $OUT/; echo "== $m"; cat $d.table
    done ;;
  *) echo "usage: $0 phases|passages|queries|eval passages|queries"; exit 2 ;;
esac
