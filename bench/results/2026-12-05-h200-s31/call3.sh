#!/usr/bin/env bash
# Session 31 call 3 (issue 14), same machine as calls 1-2: sleeping device waits and 128 KiB tokenize calls
# together ("both") against the defaults, alternated twice, every part but the profile; runs given 120 s (call 1's
# base runs were cut at 85 s in their short-documents part on this slow host). Predicted from call 1 (each
# alone: sleep engine 64 +6/+11%, 1,024 +5/+10%; 128 KiB service at saturation +4/+22%, batch long +4/+7%):
# both: engine 64 +3-10%, 1,024 +5-12%, service at saturation 0-15%, batch long +3-8%, short within the spread,
# half-load p99 within the spread. Rule: make both the GPU's defaults if no part reads lower beyond 5% in both
# pairs and engine 1,024 or service saturation reads higher in both.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
RUNS=""
for r in base3 both1 base4 both2; do d=$OUT/$r; mkdir -p $d; t0=$SECONDS
  extra=""; [ ${r:0:4} = both ] && extra="--device-wait sleep --tokenize-batch-kb 128"
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL 125 python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.3 --parts packed,engine,service,batch --engine-procs auto --front-procs 6 --short-docs 8000 $extra --out $d > $d/log.txt 2>&1
  echo "$r rc $? $((SECONDS-t0)) s"; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
  RUNS="$RUNS $r"
done
PYTHONPATH=$PWD:$PYTHONPATH python3 bench/e2e_brief.py $(for r in $RUNS; do echo $OUT/$r; done)
tar czf $OUT/all.tgz -C $OUT $RUNS && (cd $OUT && rm -rf $RUNS)
echo "total $((SECONDS-T0)) s"
