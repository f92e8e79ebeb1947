# session 19, call 1: the fused two-pass kernel on the H200 (k6.py), then bench/kernels.py through bench/model.py,
# then the kernel GPU tests, then the 1.3B model against fla
# (k6.py is kept beside this file as k6.py.txt since the revert, 039d0f1)
source bench/device_env.sh
export TRITON_CACHE_DIR=$PWD/.tcache
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
python3 -c "import torch, triton; print(torch.__version__, triton.__version__)"
timeout 170 python3 bench/results/2026-12-03-h200-s19/k6.py 2>&1 | tee $OUT/k6_log.txt | grep -v Warning
timeout 170 python3 bench/model.py --sections kernels --out $OUT/model_kernels \
  --kernel-args "--layouts H8K256V512 H16K64V128 H8K128V256 --shapes N64xL512" 2>&1 | tail -25
timeout 120 python3 -m pytest -q -x tests/gpu/test_kernels_gpu.py -k "not recurrent_step" 2>&1 | tail -5
timeout 120 python3 bench/model.py --sections model --presets fla-1.3b --rounds 3 --out $OUT/model_13b 2>&1 | tail -12
