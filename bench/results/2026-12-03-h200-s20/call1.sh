# session 20, call 1: the intra_first K256 forward (k8.py), then bench/kernels.py on it through bench/model.py, then
# the kernel GPU tests with every chunk case on intra_first
# (k8.py is kept beside this file as k8.py.txt since the revert; it ran at the commit that added it)
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
timeout 300 python3 bench/results/2026-12-03-h200-s20/k8.py 2>&1 | tee $OUT/k8_log.txt | grep -v Warning
STREAMRET_CHUNK_ALGO=intra_first timeout 150 python3 bench/model.py --sections kernels --out $OUT/model_kernels \
  --kernel-args "--layouts H8K256V512 --shapes N64xL512" 2>&1 | tail -12
STREAMRET_CHUNK_ALGO=intra_first timeout 120 python3 -m pytest -q -x tests/gpu/test_kernels_gpu.py -k "chunk" 2>&1 | tail -5
