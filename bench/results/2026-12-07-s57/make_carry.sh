#!/usr/bin/env bash
# Session 57: the ignored folders that the queued device calls carry, rebuilt in a fresh checkout (a new checkout has
# none of them; run from the repository root on the workplace machine, after `pip install -e '.[server,dev]'`):
#   .whl/              fla-core and flash-linear-attention 0.6.0, grpcio-health-checking and grpcio-reflection 1.84.0
#                      (bench/device_env.sh installs them on the GPU machine)
#   .device/text/      man.txt.gz: bench/e2e.py's find_text over this machine's manual pages (8.0 MB, 58 pages)
#   .device/ab_base/   the commit before session 55's split_after (7faefb4): its streamret, bench, kernels and
#                      pyproject.toml, without bench/results, bench/RESULTS.md and the model assets (bench/e2e_ab.py
#                      links this tree's)
#   .device/old/       tcache.tgz: the Triton cache session 57's GPU tests compiled on an H100 (our kernels of those
#                      tests only; bench/device_env.sh unpacks it into .tcache)
set -euo pipefail
HERE=$(dirname "$0")
mkdir -p .whl .device/text .device/old
pip download -q --no-deps -d .whl grpcio-health-checking==1.84.0 grpcio-reflection==1.84.0 fla-core==0.6.0 \
  flash-linear-attention==0.6.0
[ -f .device/text/man.txt.gz ] || (cd bench && python3 -c "
import gzip, e2e
text, used = e2e.find_text([], int(8.0e6), 512 * 1024)
print(len(text), 'bytes of text from', [(u['source'], u['documents']) for u in used])
gzip.open('../.device/text/man.txt.gz', 'wt').write(text)")
rm -rf .device/ab_base && mkdir -p .device/ab_base
git archive 7faefb4 streamret bench kernels pyproject.toml | tar x -C .device/ab_base
rm -rf .device/ab_base/bench/results .device/ab_base/bench/RESULTS.md .device/ab_base/streamret/assets
cp "$HERE/call15_gpu_tests/tcache.tgz" .device/old/tcache.tgz
du -sh .whl .device/*
