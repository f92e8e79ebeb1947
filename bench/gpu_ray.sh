#!/usr/bin/env bash
# Issue 19 on the GPU machine in one call (about 7 minutes, at most 8): Ray from the carried slim wheel, a
# check that Ray and its tasks see the GPU, the GPU-marked Ray tests, then bench/cluster_gpu.py (embedded
# server vs `serve --ray` with one GPU worker, worker kills, `embed` vs `embed --ray`); the bench's table last.
#
#   bash bench/gpu_ray.sh [--no-tests] [BENCH ARGS...]
# --no-tests skips the Ray check and the GPU-marked tests; BENCH ARGS go to bench/cluster_gpu.py, e.g. only the
# batch part on a corpus large enough for the H200 (about 3 minutes in all):
#   bash bench/gpu_ray.sh --no-tests --parts batch --embed-docs 4000
#
# From a copy of the tree WITHOUT streamret/assets (38 MB; the runs use random:default, the bundled model's
# layout with random weights and the byte tokenizer), carrying .whl-ray: build it with
#   bash ../shared/tools/slim-ray-wheel.sh .whl-ray     # Ray 2.60 for cp312 (45 MB) and the wheels it needs
# plus .whl-ray/optional/: pandas, python-dateutil, tzdata (Ray Data imports pandas) and grpcio-health-checking,
# grpcio-reflection 1.84.0 (the server's), each installed only when its module does not import:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 -d .whl-ray/optional \
#     pandas python-dateutil tzdata grpcio-health-checking==1.84.0 grpcio-reflection==1.84.0
# (all of .whl-ray: 56 MiB; with the tracked files less streamret/assets, 58 MiB of the 64 a call carries). Optional:
# .tcache/tc.tar.xz (a Triton cache, as bench/gpu_final.sh takes it). Results: $OUT/log.txt, $OUT/ray_check.txt,
# $OUT/pytest_gpu_ray.txt, $OUT/cluster_gpu/ (cluster_gpu.json, the servers' and embed jobs' logs).
set -u
source bench/device_env.sh
export PATH="/tmp/site/bin:$PATH"  # Ray's own command-line scripts (`ray status`); ray.init needs none of them
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-/tmp/triton_cache}  # one cache for every process, Ray workers too
if [ -f .tcache/tc.tar.xz ] && [ ! -d "$TRITON_CACHE_DIR" ]; then
  mkdir -p "$TRITON_CACHE_DIR" && tar xJf .tcache/tc.tar.xz -C "$TRITON_CACHE_DIR" --strip-components=1
fi
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
step() {  # step NAME SECONDS COMMAND...: SIGINT at the limit (the bench then stops its servers), KILL 20 s later
  local name=$1 limit=$2; shift 2
  echo "=== $name (limit ${limit}s) $(date -u +%H:%M:%S)"
  local t0=$SECONDS
  timeout --signal=INT --kill-after=20 "$limit" "$@"
  echo "=== $name exit $? after $((SECONDS - t0))s"
}
pip_target() { python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$@"; }

nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
t0=$SECONDS
pip_target .whl-ray/*.whl
for pair in pandas:pandas python_dateutil:dateutil tzdata:tzdata grpcio_health_checking:grpc_health \
            grpcio_reflection:grpc_reflection; do
  module=${pair#*:}
  if ! python3 -c "import $module" 2>/dev/null; then
    echo "installing ${pair%%:*} (no module $module here)"
    pip_target .whl-ray/optional/"${pair%%:*}"-*.whl
  fi
done
echo "installed in $((SECONDS - t0))s: $(python3 -c 'import ray, pandas, grpc; print("ray", ray.__version__, "pandas", pandas.__version__, "grpcio", grpc.__version__)')"

if [ "${1:-}" = --no-tests ]; then
  shift
else
  step ray-check 45 python3 bench/ray_gpu_check.py > >(tee "$OUT/ray_check.txt")
  step pytest-gpu-ray 120 python3 -m pytest -q -p no:cacheprovider -rs tests/test_cluster_gpu.py > "$OUT/pytest_gpu_ray.txt" 2>&1
  tail -n 15 "$OUT/pytest_gpu_ray.txt"
fi
step cluster-gpu 300 python3 bench/cluster_gpu.py --out "$OUT/cluster_gpu" "$@"
echo "=== done $(date -u +%H:%M:%S)"
python3 bench/cluster_gpu.py --print-table "$OUT/cluster_gpu/cluster_gpu.json"
