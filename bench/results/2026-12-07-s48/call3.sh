#!/usr/bin/env bash
# Session 48, call 3 (after call2.sh, same warm machine): the fla-hub 1.3B forward with the two-pass output pass in
# each form (bench/model.py --ab STREAMRET_TWO_PASS_FORM=scores,keys), fla's RetNetModel beside them, three
# alternating rounds. The model's forward has no initial state, so with spans of 512 the keys form at B64 x T512
# does no state product at all and stores no span state; at B1 x T32768 the sequence is one work item of 64
# spans of 512 (uncut at 256 narrow state programs) and reads a span state a block.
# Predicted on an H200 (session 40: scores 157.5 ms at B64 x T512, 1.116x fla; 159.3 at B1 x T32768, 1.120x):
# keys 1.5-4% faster at B64 x T512 if call2's kernel gain holds (the chunk kernel is 11% of the forward), within
# +-2% at B1 x T32768.
set -u
T0=$SECONDS
source bench/device_env.sh
mkdir -p $OUT/model
timeout -s KILL 560 python3 bench/model.py --out $OUT/model --sections model --presets fla-1.3b --rounds 3 \
  --ab STREAMRET_TWO_PASS_FORM=scores,keys > $OUT/model/log.txt 2>&1
echo "model.py rc $? $((SECONDS-T0)) s"
grep -E "^(model|\[)" $OUT/model/log.txt | cut -c1-200 | tail -12
