# Source from the repo root on the GPU machine (no package registry there, so no install):
# maps kernels/ to its import name, unpacks any carried wheels from .whl/, and keeps Triton's cache in .tcache
# (unpacked from a carried .device/old/tcache.tgz when there is no .tcache yet: a cold cache costs minutes);
# prints the card and the torch and Triton versions.
ROOT=$(pwd)
mkdir -p /tmp/srpath && ln -sfn "$ROOT/kernels" /tmp/srpath/streamret_kernels
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH="$ROOT:/tmp/srpath:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
[ -f .device/old/tcache.tgz ] && [ ! -d .tcache ] && tar xzf .device/old/tcache.tgz
export TRITON_CACHE_DIR="$ROOT/.tcache"
# the service parts import grpc_health and grpc_reflection, which the GPU image lacks: say so before a run spends
# minutes and then fails at its service part (session 51 lost one A/B's service half that way)
python3 -c "import grpc_health, grpc_reflection" 2>/dev/null || echo "WARNING: no grpc_health / grpc_reflection:" \
  "carry .whl with grpcio_health_checking and grpcio_reflection 1.84.0 wheels (pip download --no-deps -d .whl ...)"
# which card and versions gave the figures that follow (a script's first lines of output)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
