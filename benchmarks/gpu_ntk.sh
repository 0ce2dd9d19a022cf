#!/usr/bin/env bash
# The NTK engine benchmark on a GPU, as one prepared script of at most 10 minutes.
#
# Times the mean NTK (C = 10) of LeNet-5x8 and ResNet-20 at n = 4096 (SIZES to change) with
# sdcomplex's "auto" engine, the phases against the GPU's measured fp32 matrix-multiply rate,
# and writes the GPU table of benchmarks/README.md (with the GPU's name). Gram matrices stay in
# full float32: jax_default_matmul_precision=highest and Precision.HIGHEST in every contraction
# (TF32, the default on recent NVIDIA GPUs, is too imprecise for kernels).
#
# Needs a CUDA-enabled jax in the active environment (python -c "import jax; print(jax.devices())"
# must list a GPU); neural-tangents is not run here (its pinned environment is CPU-only).
#   bash benchmarks/gpu_ntk.sh                      # on the GPU machine
#   SIZES=32 bash benchmarks/gpu_ntk.sh --allow-cpu --no-readme   # dry run on a CPU
set -euo pipefail
cd "$(dirname "$0")/.."
export JAX_DEFAULT_MATMUL_PRECISION=highest
export XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
# 570 s: leaves time inside a 10-minute slot for start-up and the README write.
exec timeout 570 python benchmarks/ntk_engines.py --device gpu --sizes ${SIZES:-4096} \
  --no-nt --memory-n 0 --jacobian-max-n 0 --repeats 1 --memory-budget-gb "${BUDGET_GB:-24}" "$@"
