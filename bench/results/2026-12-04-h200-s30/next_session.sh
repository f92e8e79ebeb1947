#!/usr/bin/env bash
# Written in session 30 before a machine was lent (it then ran as session 30's call 2): a tokenizer process's CPU a
# token after session 30's changes, against the tree of 3b1f3aa (session 29's end). Changed: the text front makes
# a chunk's pieces as rows (texts and a flat list of numbers) in one pass over the sentence ends, with no TextPiece a
# sentence, and a batch's columns once from every request's rows; marks and safe cuts found by literal-prefixed
# patterns; the word cache checks a call's text for non-plain characters by isascii and substring searches. Same
# pieces, fronts and ids (session 29's bench/results/2026-12-04-vm-s29/cut_diff.py with 3b1f3aa's text.py and
# sentences.py as its old ones, and bench/results/2026-12-04-vm-s30/encode_diff.py). Workplace VM,
# bench/tokenize_cost.py --copies 1 --mb 4, three alternated pairs: warm 0.267-0.315 -> 0.210-0.258 us a token
# (-18 to -21%), first pass 0.372-0.410 -> 0.315-0.363 (-3 to -17%).
# The old files are carried in .device/old/s30/ (their paths kept; made with
#   git diff --name-only 3b1f3aa HEAD -- streamret bench/tokenize_cost.py | while read f; do mkdir -p .device/old/s30/$(dirname $f); git show 3b1f3aa:$f > .device/old/s30/$f; done
# where a file is new since 3b1f3aa it is removed from the old copy). Carry [".whl", ".device/text", ".tcache", ".device/old"].
# 1) tokenize_cost with 16 copies (every core busy), old / new alternated twice. Predicted (session 26 call 6 read
#    1.50-1.82 first / 0.78-1.01 warm with 16 copies): new -10 to -20% warm, -3 to -15% first pass.
# 2) engine parts at 1e8 tokens, old / new once each (about 60 s each). Predicted: the tokenizer processes' us a
#    token -8 to -18%; 64 streams +3-10% (the tokenize leg is 12 of the 20 ms round trip), 1,024 streams +3-10%.
#    One pair only: within the machine's spread unless the tokenizer processes' figure moves as predicted.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS; REPO=$PWD
mkdir -p /tmp/old && cp -r streamret bench /tmp/old/ && (cd .device/old/s30 && find . -type f | while read f; do cp "$f" "/tmp/old/$f"; done)
for r in o1 n1 o2 n2; do d=$OUT/cost_$r; mkdir -p $d; t0=$SECONDS
  root=$REPO; [ ${r:0:1} = o ] && root=/tmp/old
  (cd $root && PYTHONPATH=$root:$PYTHONPATH timeout -s KILL 100 python3 bench/tokenize_cost.py --text $REPO/.device/text/man.txt.gz --copies 16 --mb 0.5 --out $d > $d/log.txt 2>&1)
  echo "cost_$r rc $? $((SECONDS-t0)) s"; tail -3 $d/log.txt
done
RUNS="old new"
for r in $RUNS; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  root=$REPO; [ $r = old ] && root=/tmp/old
  pk=; [ $r = old ] && pk=packed,
  (cd $root && PYTHONPATH=$root:$PYTHONPATH timeout -s KILL 120 python3 bench/e2e.py --text $REPO/.device/text/man.txt.gz --packed-seconds 0.3 --parts ${pk}engine --engine-procs auto --tokens 1e8 --out $d > $d/log.txt 2>&1)
  echo "$r rc $? $((SECONDS-t0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
done
PYTHONPATH=$PWD:$PYTHONPATH python3 bench/e2e_brief.py $(for r in $RUNS; do echo $OUT/$r; done)
tar czf $OUT/all.tgz -C $OUT $RUNS cost_o1 cost_n1 cost_o2 cost_n2 && (cd $OUT && rm -rf $RUNS cost_o1 cost_n1 cost_o2 cost_n2)
echo "total $((SECONDS-T0)) s"
