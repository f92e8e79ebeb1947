#!/usr/bin/env bash
# Session 27 call 4 (issue 14): the whole list on this tree (the word table; a batch's piece columns from one
# call in the tokenizer process) against session 26's tree (its tokenizer.py and tokenize_worker.py carried in
# .device/old/, the only code that differs), alternated twice, default sizes. Workplace VM, tokenize_cost one copy,
# three alternated pairs: warm pass 0.48-0.63 -> 0.38-0.42 us a token, first pass 0.63-0.81 -> 0.56-0.67; call 3
# (the word table alone): engine parts +4-6%, tokenizer processes -5 to -17% us a token. Predicted: tokenizer
# processes -20 to -30% us a token in every part; engine 64 / 1,024 streams +5-12%; service at saturation
# (512 B chunks, all 16 cores busy) +5-15% tokens/s; half-load ack p99 within the spread (47-60 ms in call 2);
# batch short +0-10%, long within the spread.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS; REPO=$PWD
mkdir -p /tmp/old && cp -r streamret bench /tmp/old/ && cp .device/old/tokenizer.py /tmp/old/streamret/model/tokenizer.py \
  && cp .device/old/tokenize_worker.py /tmp/old/streamret/engine/tokenize_worker.py
RUNS="old1 new1 old2 new2"
for r in $RUNS; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  root=$REPO; [ ${r%?} = old ] && root=/tmp/old
  (cd $root && PYTHONPATH=$root:$PYTHONPATH timeout -s KILL 130 python3 bench/e2e.py --text $REPO/.device/text/man.txt.gz --packed-seconds 1 --engine-procs auto --front-procs 6 --short-docs 8000 --out $d > $d/log.txt 2>&1)
  echo "$r rc $? $((SECONDS-t0)) s"; sed -n '/^part /,/^$/p' $d/log.txt | cut -c1-150; grep -B2 -A12 "FAILED\|Traceback" $d/log.txt | head -20
done
PYTHONPATH=$PWD:$PYTHONPATH python3 bench/e2e_brief.py $(for r in $RUNS; do echo $OUT/$r; done)
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
