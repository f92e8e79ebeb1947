#!/usr/bin/env bash
# Session 28 call 3 (issue 14): the word cache's new-word path (array work, the tokenizer's WordPiece in Python;
# commit "Word cache: new words made with array work ...") against session 27's tokenizer.py (carried in
# .device/old/, the only file that differs), engine parts at 1e8 tokens, alternated twice. Workplace VM, 4 MB of
# manual pages in 16 x 2 KB calls: first pass 0.35 -> 0.23-0.26 us a token, warm within +0-6%. In the engine
# parts a tokenizer process sees much of its text for the first time (calls 1-2: 0.77-1.30 us a token against
# tokenize_cost's warm 0.51 on the H200 in session 27). Predicted: tokenizer processes -10 to -20% us a token;
# engine 64 streams +3-8% (the tokenize leg p50 10-13 -> 9-11 ms), 1,024 streams 0 to +8%.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS; REPO=$PWD
mkdir -p /tmp/old && cp -r streamret bench /tmp/old/ && cp .device/old/tokenizer.py /tmp/old/streamret/model/tokenizer.py
RUNS="old1 new1 old2 new2"
for r in $RUNS; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  root=$REPO; [ ${r%?} = old ] && root=/tmp/old
  (cd $root && PYTHONPATH=$root:$PYTHONPATH timeout -s KILL 120 python3 bench/e2e.py --text $REPO/.device/text/man.txt.gz --packed-seconds 0.3 --parts packed,engine --engine-procs auto --tokens 1e8 --out $d > $d/log.txt 2>&1)
  echo "$r rc $? $((SECONDS-t0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
done
PYTHONPATH=$PWD:$PYTHONPATH python3 bench/e2e_brief.py $(for r in $RUNS; do echo $OUT/$r; done)
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
