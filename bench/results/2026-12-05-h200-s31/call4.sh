#!/usr/bin/env bash
# Session 31 call 4 (issue 14), same machine as calls 1-3: the whole list once with sleeping device waits and 128
# KiB tokenize calls (the flags of call 3's "both", which its rule made the GPU's defaults), session 30 call 5's
# command otherwise; then one more pair in the reverse order (both first, then the defaults as they stood), since
# calls 1 and 3 alternated base first while this machine drifted upward (base 8.4 -> 10.8 M at 1,024 streams);
# then the GPU tests of the engine and of the device wait. Predicted: whole list engine 64 / 1,024 streams 6-7 /
# 9.5-11.5 M, service 6.5-7.5 M (p99 0.4-0.55 s), half-load p99 38-55 ms, batch long 10-11 M, short 7-8 M; in the
# reverse pair "both" still >= the defaults at 1,024 streams.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
d=$OUT/whole; mkdir -p $d
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 200 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 1 --engine-procs auto --front-procs 6 --short-docs 8000 --device-wait sleep --tokenize-batch-kb 128 --out $d > $d/log.txt 2>&1
echo "whole rc $? $((SECONDS-T0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
RUNS="whole"
for r in both3 base5; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  extra=""; [ ${r:0:4} = both ] && extra="--device-wait sleep --tokenize-batch-kb 128"
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 110 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,engine,service,batch --engine-procs auto --front-procs 6 --short-docs 8000 $extra --out $d > $d/log.txt 2>&1
  echo "$r rc $? $((SECONDS-t0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
  RUNS="$RUNS $r"
done
PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 150 python3 -m pytest -q -p no:cacheprovider tests/test_engine_gpu.py tests/gpu/test_device_wait_gpu.py 2>&1 | tail -3
PYTHONPATH=$PWD:$PYTHONPATH python3 bench/e2e_brief.py $(for r in $RUNS; do echo $OUT/$r; done)
sed -n '/^part /,/^$/p' $OUT/whole/log.txt | cut -c1-200
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
