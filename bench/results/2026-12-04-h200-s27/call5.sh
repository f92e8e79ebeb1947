#!/usr/bin/env bash
# Session 27 call 5 (issue 14; the session's last ~290 s of device time): bench/tokenize_cost.py on this tree
# (word table with take() gathers and a dict for long words; a batch's reply as whole-batch arrays) against
# session 26's tree (its tokenizer.py and tokenize_worker.py carried in .device/old/), 512 B and 2 KB chunks,
# 1 and 16 copies. Workplace VM, a tokenizer process's work plus the engine's unpickling: 512 B x 64 chunks
# 0.86 -> 0.45 us a token, 2 KB x 64 0.52 -> 0.33. Predicted (one copy, warm pass; call 3 measured 0.608 for
# session 26's tree at 2 KB): 2 KB 0.61 -> 0.40-0.45, 512 B -35 to -45%; first passes -10 to -20%; 16 copies
# in proportion.
set -u
source bench/device_env.sh
T0=$SECONDS; REPO=$PWD
mkdir -p /tmp/old && cp -r streamret bench /tmp/old/ && cp .device/old/tokenizer.py /tmp/old/streamret/model/tokenizer.py \
  && cp .device/old/tokenize_worker.py /tmp/old/streamret/engine/tokenize_worker.py
RUNS="old512 new512 old2048 new2048 old512b new512b"
for r in $RUNS; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  root=$REPO; [ ${r:0:3} = old ] && root=/tmp/old
  cb=${r:3:4}; cb=${cb%b}
  (cd $root && PYTHONPATH=$root:$PYTHONPATH timeout -s KILL 40 python3 bench/tokenize_cost.py --text $REPO/.device/text/man.txt.gz --copies 1,16 --mb 0.4 --chunk-bytes $cb --out $d > $d/log.txt 2>&1)
  echo "$r ($cb B) rc $? $((SECONDS-t0)) s"; tail -4 $d/log.txt
done
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
