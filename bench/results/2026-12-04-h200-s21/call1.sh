#!/usr/bin/env bash
# Session 21 call 1 (issue 14): the e2e list with the graphed packed reference (541673e); the batch parts with
# guided sub-batch sizes, then at 0a139e6 (fixed sizes; .device/old), then again.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
ln -sfn $PWD/streamret/assets .device/old/streamret/assets  # (the same weights: not carried twice)
T0=$SECONDS
run(){ name=$1; limit=$2; dir=$3; shift 3; d=$OUT/$name; mkdir -p $d; t0=$SECONDS
  (cd $dir && PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL $limit python3 bench/e2e.py --text $OLDPWD/.device/text/man.txt.gz --packed-seconds 1 --engine-procs auto "$@" --out $d > $d/log.txt 2>&1)
  echo "$name rc $? $((SECONDS-t0)) s"; grep -B2 -A3 "^x packed" $d/log.txt | cut -c1-400; sed -n '/^part /,/^$/p' $d/log.txt; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12; }
run full 260 . --front-procs 6 --tokens 1e7 --parts packed,engine,service
run batch 200 . --short-docs 8000 --parts packed,batch
run batch_old 200 .device/old --short-docs 8000 --parts packed,batch
run batch2 200 . --short-docs 8000 --parts packed,batch
echo "total $((SECONDS-T0)) s"
