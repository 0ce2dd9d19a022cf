"""Boundary checks of the complexity functions: complex, empty, NaN/inf, numpy scalars, imports."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sdcomplex.complexity import (
    factorize_kernel,
    kernel_alignment,
    margin_bound,
    supervision_complexity,
    target_alignment,
)

K = np.array([[2.0, 0.5], [0.5, 1.0]])
Y = np.array([1.0, -1.0])


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: supervision_complexity(K.astype(complex), Y), "kernel"),
        (lambda: supervision_complexity(K + 1e-3j, Y), "kernel"),
        (lambda: supervision_complexity(K, Y + 0j), "targets"),
        (lambda: supervision_complexity(K, [1 + 1j, 0]), "targets"),
        (lambda: supervision_complexity(K, Y, offset=Y * 1j), "offset"),
        (lambda: supervision_complexity(np.stack([K, K]) * (1 + 0j), np.ones((2, 2))), "kernel"),
        (lambda: factorize_kernel(K.astype(np.complex64)), "kernel"),
        (lambda: kernel_alignment(K, K * 1j), "k2"),
        (lambda: target_alignment(K, Y * 1j), "targets"),
        (lambda: margin_bound(K * 1j, Y, Y, Y, gamma=1.0), "kernel"),
        (lambda: margin_bound(K, Y * 1j, Y, Y, gamma=1.0), "teacher_targets"),
    ],
)
def test_complex_values_are_a_type_error_naming_the_argument(call, name):
    with pytest.raises(TypeError, match=f"{name} must be real, got complex"):
        call()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: supervision_complexity(K, np.zeros((2, 0))), "targets is empty"),
        (lambda: supervision_complexity(K, []), "targets is empty"),
        (lambda: supervision_complexity(np.zeros((0, 0)), []), "kernel is empty"),
        (lambda: supervision_complexity(np.zeros((0, 3, 3)), np.ones((3, 0))), "empty"),
        (lambda: factorize_kernel(K).complexity(np.zeros((2, 0))), "targets is empty"),
        (lambda: target_alignment(K, np.zeros((2, 0))), "targets is empty"),
        (lambda: kernel_alignment(np.zeros((0, 0)), np.zeros((0, 0))), "k1 is empty"),
        (lambda: margin_bound(K, [], Y, Y, gamma=1.0), "teacher_targets is empty"),
    ],
)
def test_empty_inputs_are_a_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_anywhere_are_a_value_error(bad):
    kind = "NaN" if np.isnan(bad) else "inf"
    k_bad, y_bad = K.copy(), Y.copy()
    k_bad[0, 1] = k_bad[1, 0] = bad
    y_bad[1] = bad
    calls = [
        (lambda: supervision_complexity(k_bad, Y), "kernel"),
        (lambda: supervision_complexity(K, y_bad), "targets"),
        (lambda: supervision_complexity(K, Y, offset=y_bad), "offset"),
        (lambda: kernel_alignment(K, k_bad), "k2"),
        (lambda: target_alignment(K, y_bad), "targets"),
        (lambda: margin_bound(K, Y, Y, y_bad, gamma=1.0), "student_outputs"),
        (lambda: supervision_complexity(np.float32(bad) * np.ones((2, 2)), Y), "kernel"),
    ]
    for call, name in calls:
        with pytest.raises(ValueError, match=f"{name} contains {kind}"):
            call()


@pytest.mark.parametrize(
    "number", [np.float32(0.25), np.float64(0.25), np.int64(1), np.int32(0), np.array(0.5)]
)
def test_numpy_scalars_are_accepted_as_numbers(number):
    plain = supervision_complexity(K, Y, ridge=float(number))
    assert supervision_complexity(K, Y, ridge=number).value == pytest.approx(plain.value)
    assert isinstance(supervision_complexity(K, Y, ridge=number).ridge, float)
    k = np.eye(4) * 2.0
    y = np.array([1.0, -1.0, 1.0, 1.0])
    gamma = float(number) + 1.0
    b = margin_bound(k, y, y, y, gamma=np.float32(gamma), delta=np.float32(0.1))
    assert b.gamma == pytest.approx(gamma) and b.delta == pytest.approx(0.1)
    assert isinstance(b.gamma, float)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"ridge": True}, TypeError),
        ({"ridge": "0.1"}, TypeError),
        ({"ridge": 1j}, TypeError),
        ({"ridge": np.array([0.1])}, TypeError),
        ({"ridge": np.nan}, ValueError),
        ({"ridge": np.float32(-1.0)}, ValueError),
    ],
)
def test_bad_scalars(kwargs, error):
    with pytest.raises(error, match="ridge"):
        supervision_complexity(K, Y, **kwargs)


def test_bad_margin_bound_scalars():
    with pytest.raises(ValueError, match="gamma"):
        margin_bound(K, Y, Y, Y, gamma=np.float32(0.0))
    with pytest.raises(ValueError, match="gamma"):
        margin_bound(K, Y, Y, Y, gamma=np.inf)
    with pytest.raises(TypeError, match="delta"):
        margin_bound(K, Y, Y, Y, gamma=1.0, delta="0.1")


def test_importing_complexity_imports_no_jax():
    # The package's own imports only: `sdcomplex/__init__` is bypassed, so this checks what
    # `sdcomplex.complexity` and `sdcomplex.targets` pull in themselves.
    root = Path(__file__).resolve().parents[2]
    code = (
        "import sys, types\n"
        "pkg = types.ModuleType('sdcomplex'); pkg.__path__ = [sys.argv[1]]\n"
        "sys.modules['sdcomplex'] = pkg\n"
        "import sdcomplex.complexity as c, sdcomplex.targets\n"
        "assert 'jax' not in sys.modules and 'flax' not in sys.modules, 'jax imported'\n"
        "assert 'supervision_complexity_matfree' in dir(c)\n"
        "c.supervision_complexity_matfree  # the lazy re-export still resolves\n"
        "assert 'jax' in sys.modules\n"
    )
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    done = subprocess.run(
        [sys.executable, "-c", code, str(root / "sdcomplex")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_lazy_reexport_is_the_ntk_function():
    from sdcomplex import complexity, ntk

    assert complexity.supervision_complexity_matfree is ntk.supervision_complexity_matfree
    assert complexity.MatrixFreeComplexity is ntk.MatrixFreeComplexity
    with pytest.raises(AttributeError):
        complexity.no_such_name  # noqa: B018


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_low_precision_kernels_are_solved_in_float64(dtype):
    import jax.numpy as jnp

    k = jnp.asarray(K, dtype)
    exact = np.asarray(k).astype(np.float64)
    r = supervision_complexity(k, jnp.asarray(Y, dtype))
    assert r.value == pytest.approx(Y @ np.linalg.solve(exact, Y), rel=1e-12)


def test_importing_the_package_for_complexity_imports_no_jax():
    code = (
        "import sys, sdcomplex.complexity, sdcomplex.targets\n"
        "assert 'jax' not in sys.modules and 'flax' not in sys.modules, 'jax imported'\n"
        "from sdcomplex import empirical_ntk, ntk\n"
        "assert empirical_ntk is ntk.empirical_ntk\n"
    )
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")]
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
