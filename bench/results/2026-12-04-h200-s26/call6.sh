#!/usr/bin/env bash
# Session 26 call 6 (issue 14): the word cache seeded with the vocabulary's whole words (in vocabulary order)
# against the tree before it (its tokenizer.py carried as .device/old/tokenizer.py), bench/tokenize_cost.py with
# 16 copies, alternated twice. On the workplace VM the seeded cache's encode took 0.33-0.51 us a token on a first
# pass against 0.68-1.07 before, and 0.14-0.21 on a warm one against 0.13-0.17. Predicted here: first pass
# 1.55 -> 1.0-1.3 us a token, warm pass 0.82 -> 0.82-0.90 (call 4's figures, same tree less the seeding).
set -u
source bench/device_env.sh
T0=$SECONDS; REPO=$PWD
mkdir -p /tmp/old && cp -r streamret bench /tmp/old/ && cp .device/old/tokenizer.py /tmp/old/streamret/model/tokenizer.py
for r in old1 new1 old2 new2; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  root=$REPO; [ ${r%?} = old ] && root=/tmp/old
  (cd $root && PYTHONPATH=$root:$PYTHONPATH timeout -s KILL 60 python3 bench/tokenize_cost.py --text $REPO/.device/text/man.txt.gz --copies 16 --mb 0.5 --out $d > $d/log.txt 2>&1)
  echo "$r rc $? $((SECONDS-t0)) s: $(tail -2 $d/log.txt | tr '\n' ' ')"
done
tar czf $OUT/all.tgz -C $OUT old1 new1 old2 new2 && (cd $OUT && rm -rf old1 new1 old2 new2)
echo "total $((SECONDS-T0)) s"
