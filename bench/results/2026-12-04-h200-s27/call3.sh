#!/usr/bin/env bash
# Session 27 call 3 (issue 14): the word cache's numpy table (this tree) against session 26's dict cache (its
# tokenizer.py carried as .device/old/tokenizer.py, the only code that differs), alternated twice: first
# bench/tokenize_cost.py with 1 and 16 copies, then the engine parts (packed, engine at 64 and 1,024 streams, 1e8
# tokens). Workplace VM, man pages cut as the engine cuts them, in one process: encode 0.32 -> 0.16 us a token
# warm, the whole tokenizer process's work 0.60 -> 0.44. Predicted here: tokenize_cost warm pass 0.60 -> 0.45-0.52
# (one copy), 0.82 -> 0.62-0.72 (16); first pass within +-10%; engine parts: tokenizer processes' us a token
# -15 to -25%, tokens/s +5-15% at both stream counts (the engine parts used 10-11 of 16 cores in call 2: the
# tokenize leg is part of every chunk's round trip at 64 streams).
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS; REPO=$PWD
mkdir -p /tmp/old && cp -r streamret bench /tmp/old/ && cp .device/old/tokenizer.py /tmp/old/streamret/model/tokenizer.py
for r in tcold1 tcnew1 tcold2 tcnew2; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  root=$REPO; [ ${r:2:3} = old ] && root=/tmp/old
  (cd $root && PYTHONPATH=$root:$PYTHONPATH timeout -s KILL 80 python3 bench/tokenize_cost.py --text $REPO/.device/text/man.txt.gz --copies 1,16 --mb 0.4 --out $d > $d/log.txt 2>&1)
  echo "$r rc $? $((SECONDS-t0)) s"; tail -4 $d/log.txt
done
RUNS="old1 new1 old2 new2"
for r in $RUNS; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  root=$REPO; [ ${r%?} = old ] && root=/tmp/old
  (cd $root && PYTHONPATH=$root:$PYTHONPATH timeout -s KILL 90 python3 bench/e2e.py --text $REPO/.device/text/man.txt.gz --packed-seconds 0.3 --parts packed,engine --engine-procs auto --tokens 1e8 --out $d > $d/log.txt 2>&1)
  echo "$r rc $? $((SECONDS-t0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
done
PYTHONPATH=$PWD:$PYTHONPATH python3 bench/e2e_brief.py $(for r in $RUNS; do echo $OUT/$r; done)
tar czf $OUT/all.tgz -C $OUT tcold1 tcnew1 tcold2 tcnew2 $RUNS && (cd $OUT && rm -rf tcold1 tcnew1 tcold2 tcnew2 $RUNS)
echo "total $((SECONDS-T0)) s"
