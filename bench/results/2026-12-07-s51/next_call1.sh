#!/usr/bin/env bash
# Written in session 51 for a later session (any card; carry [".whl", ".device/text", ".device/old"]): the batch job's
# small first part (embed_parquet's first_part_bytes, bench/e2e.py --first-part-bytes) against none, batch parts only,
# alternated twice (none / 8 MiB / 8 MiB / none). Why: in session 51's call 3 the job handed its first documents to
# the engines 96-137 ms (long) and 138-170 ms (short) into a part of 0.7 s / 1.4 s, after reading the whole part; on
# the workplace VM a 4 MiB first part moved the first send from 60-62 to 37-49 ms (long) and 75-111 to 50-53 ms
# (short), no lower than about one whole read of the corpus (one row group) (bench/results/2026-12-07-s51/batch_start.py).
# Predicted: first documents handed 30-80 ms sooner; batch long +3-10%, short +2-6%. Rule: make a first part the
# GPU default (bytes_per_part / GPU_PART_SCALE) if both batch parts read higher in both pairs.
# (Ran in session 52, calls 1 and its rerun; --first-part-bytes was removed after it: run it from a tree of
# sessions 51-52.)
set -u
source bench/device_env.sh
T0=$SECONDS; RUNS=""
for r in none1 first1 first2 none2; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  extra=""; [ ${r:0:5} = first ] && extra="--first-part-bytes 8388608"
  timeout -s KILL 120 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,batch \
    --engine-procs auto --short-docs 8000 $extra --out $d > $d/log.txt 2>&1
  echo "$r rc $? $((SECONDS-t0)) s"; grep -A12 "Traceback" $d/log.txt | head -12
  grep "^batch_\|first part" $d/log.txt | cut -c1-150
  RUNS="$RUNS $r"
done
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
