# Source from the repo root on the GPU machine (no package registry there, so no install):
# maps kernels/ to its import name and unpacks any carried wheels from .whl/.
ROOT=$(pwd)
mkdir -p /tmp/srpath && ln -sfn "$ROOT/kernels" /tmp/srpath/streamret_kernels
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH="$ROOT:/tmp/srpath:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
