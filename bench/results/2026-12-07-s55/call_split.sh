#!/usr/bin/env bash
# Session 55 (any card; carry [".whl", ".device/text", ".device/old", ".device/ab_base"]; about 250 s with the
# default PARTS=packed,engine,batch, 420 s with PARTS=all).
# A/B of WorkItem.split_after (a stream's share of a step goes on into its next chunk where no record will be
# written: every e2e part here, whose engines keep no records) against the commit before it (.device/ab_base:
# `git archive` of its streamret, bench, kernels and pyproject.toml, without bench/results, bench/RESULTS.md and the
# model assets, which this script links from this tree). bench/e2e.py --parts $PARTS, --packed-seconds 0.3; a
# warm-up run (the batch parts, new, not read), then base / new / new / base.
# Why: a share stopped at the first chunk it completed. The batch job's 64 KiB chunks hold about 17 k tokens, so two
# streams sharing a 32 k step each took 16 k of a chunk and, in the next step, the 1 k left (session 54: 1.3 streams
# and 23.8 k tokens a step); at 1,024 streams a share of about 290 tokens stopped at the end of each 500-token chunk
# (24.7 k tokens a step, session 37). On the VM (long_docs_host.py, 2 documents of 800 KB, real engine, the model
# slept): 16 steps of 24.5 k tokens -> 12-13 of 30-32.6 k.
# Predicted: engine at 1,024 streams +10-25% (tokens a step 23 k -> 30 k and more, host work a step about the same);
# batch long +8-20%; engine at 64 streams, service, batch short within +-5% (whole chunks already, or one chunk a
# document); half-load ack p99 unchanged.
# Rule: the change stays if engine 1,024 and batch long read higher in both pairs and no part lower by more than 5%
# in both pairs.
set -u
PARTS=${PARTS:-packed,engine,batch}
source bench/device_env.sh
B=.device/ab_base
ln -sfn "$(pwd)/streamret/assets" $B/streamret/assets
for x in .device .whl .tcache; do ln -sfn "$(pwd)/$x" $B/$x; done
T0=$SECONDS; RUNS=""
for r in warm base1 new1 new2 base2; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  if [ ${r:0:4} = base ]; then dir=$B; else dir=.; fi
  if [ $r = warm ]; then parts="--parts packed,batch"; lim=90
  elif [ $PARTS = all ]; then parts=""; lim=140; else parts="--parts $PARTS"; lim=100; fi
  (cd $dir && source bench/device_env.sh > /dev/null && timeout -s KILL $lim python3 bench/e2e.py \
    --text .device/text/man.txt.gz --packed-seconds 0.3 $parts --engine-procs auto --front-procs 6 --short-docs 8000 \
    --out $d > $d/log.txt 2>&1)
  echo "$r rc $? $((SECONDS-t0)) s"; grep -A12 "Traceback" $d/log.txt | head -12
  RUNS="$RUNS $r"
done
source bench/device_env.sh > /dev/null  # (the kernels' link back to this tree)
python3 bench/e2e_brief.py $OUT/base1 $OUT/new1 $OUT/new2 $OUT/base2
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
