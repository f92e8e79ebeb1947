#!/usr/bin/env bash
# Session 27 call 1 (issue 14), session 26's next_session.sh run as is: the batch parts with
# smaller tokenize calls. In session 26 (call 4, call 5) the short part's step loops waited for work 75-90 ms a
# step and a short document's chunk waited p50 68-108 ms to be cut: each of an engine's two tokenize threads
# takes half of what waits in one call (up to tokenize_batch_bytes, 1 MiB), and no step starts on a chunk
# until its whole call is cut. Packed and batch parts (default sizes, the batch parts alone: compare only within this call),
# tokenize_batch_bytes 1 MiB (the default), 128 KiB and 32 KiB, alternated twice. The short part's steps held
# 56-67 streams (session 26), so an engine has about 60 documents (~220 KB) in flight and each thread's share is
# ~110 KB already: a chunk waits for the batch being cut and then its own (~2 x 36 ms at 1.35 us a token), the
# p50 measured. Predicted: 128 KiB within the spread of 1 MiB; 32 KiB the short part's tokenize p50 -> 25-40 ms
# and +10-30% tokens/s; the long part within the spread at both (its chunks are 64 KiB, one a call).
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
RUNS="b1024a b128a b32a b1024b b128b b32b"
run(){ name=$1; shift; d=$OUT/$name; mkdir -p $d; t0=$SECONDS
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 90 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,batch --engine-procs auto --short-docs 8000 "$@" --out $d > $d/log.txt 2>&1
  echo "$name rc $? $((SECONDS-t0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12; }
run b1024a
run b128a --tokenize-batch-kb 128
run b32a --tokenize-batch-kb 32
run b1024b
run b128b --tokenize-batch-kb 128
run b32b --tokenize-batch-kb 32
PYTHONPATH=$PWD:$PYTHONPATH python3 bench/e2e_brief.py $(for r in $RUNS; do echo $OUT/$r; done)
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
