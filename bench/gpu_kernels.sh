#!/usr/bin/env bash
# One GPU-machine call for the kernels: compile every variant in parallel (fills Triton's cache)
# while the GPU tests run, then the benchmark. From the repo root, with fla's wheels in .whl/:
#   bash bench/gpu_kernels.sh [bench/kernels.py options, e.g. --sweep or --layouts H8K256V512]
# Logs and kernels.json go to $OUT (the device tool's folder) or bench/out.
set -o pipefail
source bench/device_env.sh
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-/tmp/triton_cache}
# a Triton cache from an earlier run (carry .tcache): fla's autotuned kernels then compile nothing
if [ -f .tcache/tc.tar.xz ] && [ ! -d "$TRITON_CACHE_DIR" ]; then
  mkdir -p "$TRITON_CACHE_DIR" && tar xJf .tcache/tc.tar.xz -C "$TRITON_CACHE_DIR" --strip-components=1
fi
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv | tee "$OUT/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/gpu/test_kernels_gpu.py >"$OUT/pytest_gpu.log" 2>&1 &
tests=$!
python3 bench/kernels.py --precompile-only "$@" 2>&1 | tee "$OUT/precompile.log"
wait $tests
echo "GPU tests exit code $?"; tail -n 15 "$OUT/pytest_gpu.log"
python3 bench/kernels.py --out "$OUT" "$@" 2>&1 | tee "$OUT/bench.log"
