#!/usr/bin/env bash
# Session 13 call 1 (issue 14): GPU tests of the scatter reusing the gather indices, segment_sum binary search, reused slot events, then
# bench/runner_parts.py with spinners on the old tree (.device/old, ff887cc, session 12 call 5 tree) and the new one, two
# step shapes each, then e2e engine,service on the new tree.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=/tmp/tc; mkdir -p /tmp/tc
if [ -f .tcache/tc.tar.xz ] && [ ! -f /tmp/tc/.unpacked ]; then tar xJf .tcache/tc.tar.xz -C /tmp && touch /tmp/tc/.unpacked; fi
ln -sfn "$PWD/streamret/assets" .device/old/streamret/assets
R=/tmp/res1; mkdir -p $R
pack(){ tar czf $OUT/res1.tgz -C $R . ; }
T0=$SECONDS
timeout -s KILL 240 python3 -m pytest -q -p no:cacheprovider tests/gpu/test_kernels_gpu.py tests/gpu/test_fused_model_gpu.py tests/gpu/test_device_wait_gpu.py tests/test_state_store.py tests/test_engine_gpu.py tests/test_step_runs.py tests/test_graph_buckets.py -k "(graph or alternating or slot or device or engine or gpu or runs or padded or bucket or segment_sum or state) and not recurrent_step" > $R/gpu_tests.txt 2>&1
echo "tests rc $? $((SECONDS-T0)) s"; tail -3 $R/gpu_tests.txt; pack
for shape in "51 226 9" "3 1300 4"; do set -- $shape
  for tree in old new; do t0=$SECONDS; d=$R/rp_${tree}_$1; mkdir -p $d
    if [ $tree = old ]; then script=.device/old/bench/runner_parts.py; else script=bench/runner_parts.py; fi
    timeout -s KILL 60 python3 $script --streams $1 --tokens $2 --runs $3 --reps 30 --out $d > $d/log.txt 2>&1
    echo "runner_parts $tree $1 rc $? $((SECONDS-t0)) s"; done; done; pack
left=$((580-(SECONDS-T0))); t0=$SECONDS; d=$R/e2e; mkdir -p $d
[ $left -gt 100 ] && { timeout -s KILL $left python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 1 --engine-procs auto --front-procs 6 --tokens 1e7 --parts packed,engine,service --out $d > $d/log.txt 2>&1; echo "e2e rc $? $((SECONDS-t0)) s"; pack; }
python3 - <<'PY'
import json, glob
for f in sorted(glob.glob("/tmp/res1/rp_*/runner_parts.json")):
    d = json.load(open(f)); print(f.split("/")[-2], {k: round(v, 3) for k, v in d.items() if isinstance(v, float)})
PY
[ -f $d/log.txt ] && sed -n '/^part /,/^$/p' $d/log.txt && grep -A5 "the step loop's ms" $d/log.txt
