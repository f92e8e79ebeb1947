#!/usr/bin/env bash
# One GPU-machine call that measures every level in order, each step under its own time limit, so
# that one device start covers them all. From the repo root; carry .whl (fla, grpc health and
# reflection wheels), .tcache (Triton cache, optional) and .quality/{heldout,teacher_out} (quality
# student phase; see bench/quality.py). Results: $OUT/log.txt and $OUT/results.tgz (re-packed after
# every step, so a step cut short still leaves the earlier ones).
set -u
source bench/device_env.sh
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-/tmp/triton_cache}
if [ -f .tcache/tc.tar.xz ] && [ ! -d "$TRITON_CACHE_DIR" ]; then
  mkdir -p "$TRITON_CACHE_DIR" && tar xJf .tcache/tc.tar.xz -C "$TRITON_CACHE_DIR" --strip-components=1
fi
OUT=${OUT:-bench/out}
R=/tmp/res
mkdir -p "$OUT" "$R"
exec > >(tee -a "$OUT/log.txt") 2>&1
pack() { tar czf "$OUT/results.tgz" -C "$R" . ; }
step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  echo "=== $name (limit ${limit}s) $(date -u +%H:%M:%S)"
  local t0=$SECONDS
  timeout --signal=KILL "$limit" "$@"
  echo "=== $name exit $? after $((SECONDS - t0))s"
  pack
}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$R/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"

timeout --signal=KILL 240 python3 -m pytest -q -p no:cacheprovider tests/gpu tests/test_engine_gpu.py >"$R/pytest_gpu.log" 2>&1 &
tests=$!
step kernels-precompile 90 python3 bench/kernels.py --precompile-only
wait $tests; echo "GPU tests exit $?"; tail -n 25 "$R/pytest_gpu.log"; pack
step kernels 100 python3 bench/kernels.py --out "$R/kernels"
step engine-small 75 python3 bench/engine.py --device cuda --models small --streams 64,1024 --chunks 512 \
  --step-tokens 65536 --max-round-tokens 1048576 --repeats 2 --min-seconds 2 --memory-models small --memory-tokens 1000000 \
  --memory-chunk 4096 --memory-points 24 --out "$R/engine_small"
step engine-13b 65 python3 bench/engine.py --device cuda --models fla-1.3b --streams 1024 --chunks 512 \
  --step-tokens 16384 --max-round-tokens 1048576 --repeats 1 --min-seconds 2 --memory-models '' --out "$R/engine_13b"
step quality 75 python3 bench/quality.py student --data .quality/heldout --teacher-out .quality/teacher_out \
  --model default --out-dir "$R/quality"
step text-path 30 python3 bench/text_path.py --model default --mb 4 --out "$R/text_path"
step service 75 python3 bench/service.py --device cuda --model random:small --streams 1000 --chunks 12 \
  --chunk-bytes 512 --window 4 --procs 8 --phases engine,saturate,engine,saturate,half --out "$R/service.json"
step batch 55 python3 bench/batch.py --device cuda --model small --long-docs 32 --long-tokens 200000 \
  --short-docs 2000 --short-tokens 1000 --repeats 1 --out "$R/batch"
echo "=== done $(date -u +%H:%M:%S)"
