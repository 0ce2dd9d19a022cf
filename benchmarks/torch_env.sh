#!/usr/bin/env bash
# Creates the PyTorch environment of benchmarks/train_throughput.py, outside the repository:
#   bash benchmarks/torch_env.sh [VENV_DIR]    (default $SDCOMPLEX_TORCH_VENV or
#                                               ~/.cache/sdcomplex/torch-venv)
# PyTorch is pinned to exactly 2.13.0, the CPU build: an unpinned `torch` would pull a CUDA
# build of several GB. The project itself never imports torch.
set -euo pipefail
venv="${1:-${SDCOMPLEX_TORCH_VENV:-$HOME/.cache/sdcomplex/torch-venv}}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check "torch==2.13.0" numpy
"$venv/bin/python" -c "import torch; print('torch', torch.__version__, 'at', '$venv')"
