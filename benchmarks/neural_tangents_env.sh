#!/usr/bin/env bash
# Creates the virtual environment in which benchmarks/nt_reference.py runs neural-tangents 0.6.5.
#
# neural-tangents 0.6.5 needs an older JAX than sdcomplex, so it lives in its own environment,
# outside the repository (it is large and must not travel with the work tree):
#   ${NT_VENV:-$HOME/.cache/sdcomplex/venv-nt}
# Pins: jax and jaxlib 0.4.38 (with jax 0.4.30 neural-tangents' implementation 1 crashes on
# ResNet-20 in XLA's CPU backend), tf2jax 0.3.6, numpy < 2, and the TensorFlow that
# neural-tangents pulls in. Idempotent: an existing environment with the right versions is kept.
#
#   bash benchmarks/neural_tangents_env.sh          # create or check; prints the python path
set -euo pipefail

VENV="${NT_VENV:-$HOME/.cache/sdcomplex/venv-nt}"
PYTHON="${NT_PYTHON:-python3.11}"
SPECS=("neural-tangents==0.6.5" "jax==0.4.38" "jaxlib==0.4.38" "tf2jax==0.3.6" "numpy<2")

check() {
  "$VENV/bin/python" - <<'PY' 2>/dev/null
import importlib.metadata as md
want = {"neural-tangents": "0.6.5", "jax": "0.4.38", "jaxlib": "0.4.38", "tf2jax": "0.3.6"}
for name, version in want.items():
    assert md.version(name) == version, (name, md.version(name))
assert int(md.version("numpy").split(".")[0]) < 2
import neural_tangents  # noqa: F401
PY
}

if [ -x "$VENV/bin/python" ] && check; then
  echo "$VENV/bin/python"
  exit 0
fi

echo "creating the neural-tangents environment in $VENV (a few minutes)" >&2
mkdir -p "$(dirname "$VENV")"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
"$VENV/bin/python" -m pip install --quiet "${SPECS[@]}" >&2
if ! check; then
  echo "the neural-tangents environment in $VENV does not have the pinned versions" >&2
  exit 1
fi
"$VENV/bin/python" -m pip freeze > "$VENV/requirements-frozen.txt"
echo "$VENV/bin/python"
