#!/usr/bin/env bash
# Installs libtorch 2.13.0 (the version tch 0.26 accepts) for gud-nn into .torch/site-packages,
# from PyPI only: the CPU-usable default torch wheel without its dependencies, plus the two small
# CUDA runtime libraries its libtorch_cpu.so links against (libcudart, libcupti). ~30 s, 1.25 GB.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.torch
if [ -f "$dest/ready" ]; then exit 0; fi
python=${PYTHON:-python3}
if ! "$python" -m pip --version >/dev/null 2>&1; then
  echo "setup-libtorch: '$python -m pip' is not available; install Python 3 with pip" >&2
  exit 1
fi
rm -rf "$dest.tmp"
"$python" -m pip install --quiet --disable-pip-version-check --no-deps --target "$dest.tmp/site-packages" \
  torch==2.13.0 "nvidia-cuda-runtime==13.0.96.*" "nvidia-cuda-cupti==13.0.85.*"
test -f "$dest.tmp/site-packages/torch/lib/libtorch_cpu.so"
rm -rf "$dest"
mv "$dest.tmp" "$dest"
touch "$dest/ready"
echo "setup-libtorch: libtorch in $dest/site-packages/torch"
