#!/usr/bin/env bash
# Session 23 call 7 (issue 14): in call 6's steady state (74 chunks a stream, 7 s) the step thread waited 13.3 ms a
# step for the device (0.9 ms of device work: 12 processes time-slicing the GPU) beside 9 ms of host work, and was
# idle only 24%. Under CUDA MPS that wait was 1.4 ms in calls 2-3, whose short parts (19 chunks) were mostly waves.
# Predicted: MPS in the steady state at 1,024 streams 5.8 -> 7-8.5 M (wall a step 26 -> 15-18 ms); 64 streams
# under MPS with window 16 about 6 M as in call 3.
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
T0=$SECONDS
run(){ name=$1; limit=$2; shift 2; d=$OUT/$name; mkdir -p $d; t0=$SECONDS
  PYTHONPATH=$PWD:$PYTHONPATH timeout -s KILL $limit python3 bench/e2e.py --text .device/text/man.txt.gz --packed-seconds 0.5 --engine-procs auto --parts engine "$@" --out $d > $d/log.txt 2>&1
  echo "$name rc $? $((SECONDS-t0)) s"; sed -n '/^part /,/^$/p' $d/log.txt | cut -c1-190; grep -A12 "FAILED\|Traceback" $d/log.txt | head -12
  python3 - $d/e2e.json <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for k, p in d["parts"].items():
    if "steps" in p and "loop_parts_ms_per_step" in p:
        per = 12 * p["seconds"] / p["steps"] * 1e3; parts = sum(p["loop_parts_ms_per_step"].values())
        print(k, "chunks", p["chunks_per_stream"], "s", p["seconds"], "wall/step %.1f parts %.1f" % (per, parts), "items", p["engine_item_ms"], "cores", p.get("host_cores_busy"), "parts", p["loop_parts_ms_per_step"])
PY
}
export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps_pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps_log; mkdir -p /tmp/mps_pipe /tmp/mps_log
nvidia-cuda-mps-control -d > $OUT/mps_start.txt 2>&1; echo "mps start rc $?"
run mps_1024_4e7 120 --streams 1024 --tokens 4e7
run mps_64_w16 120 --streams 64 --tokens 2e7 --window 16
run mps_64_w4 120 --streams 64 --tokens 2e7
echo quit | nvidia-cuda-mps-control; sleep 2
echo "total $((SECONDS-T0)) s"
