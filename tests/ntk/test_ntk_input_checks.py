"""NaN or inf in NTK inputs or parameters are errors before any work; numpy scalar arguments."""

import jax.numpy as jnp
import numpy as np
import pytest

from sdcomplex.complexity import supervision_complexity
from sdcomplex.ntk import (
    compute_with_plan,
    empirical_ntk,
    ntk_diagonal_blocks,
    ntk_vector_product,
    plan_ntk,
    supervision_complexity_matfree,
)
from sdcomplex.ntk._complexity_matfree import _pcg, _Reducer


class CountingModel:
    """Linear model fn(params, x) = x @ params["w"] + params["b"] that counts its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, params, x):
        self.calls += 1
        return x @ params["w"] + params["b"]


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    params = {
        "w": jnp.asarray(rng.normal(size=(4, 2)), jnp.float32),
        "b": jnp.zeros((2,), jnp.float32),
    }
    x = rng.normal(size=(6, 4)).astype(np.float32)
    return params, x


def poisoned(array, value):
    a = np.array(array)
    a.flat[1] = value
    return a


ENTRY_POINTS = {
    "empirical_ntk": lambda fn, p, x1, x2: empirical_ntk(fn, p, x1, x2),
    "plan_ntk": lambda fn, p, x1, x2: plan_ntk(fn, p, x1, x2),
    "matfree": lambda fn, p, x1, x2: supervision_complexity_matfree(
        fn, p, x1, np.ones(x1.shape[0]), trace_samples=0
    ),
}


CASES = [
    (entry, where)
    for entry in sorted(ENTRY_POINTS)
    for where in ("x1", "x2", "params", "jax_x1", "jax_params")
    if not (entry == "matfree" and where == "x2")  # the matrix-free solver has one input set
]


@pytest.mark.parametrize(("entry", "where"), CASES)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_is_an_error_before_any_work(problem, entry, bad, where):
    params, x = problem
    fn = CountingModel()
    x1, x2, p = x, None, dict(params)
    if where in ("x1", "jax_x1"):
        x1 = poisoned(x, bad)
        x1 = jnp.asarray(x1) if where == "jax_x1" else x1
        name = "x1" if entry != "matfree" else "x"
    elif where == "x2":
        x2, name = poisoned(x, bad), "x2"
    else:
        w = poisoned(params["w"], bad)
        p["w"] = jnp.asarray(w) if where == "jax_params" else w
        name = r"params\['w'\]"
    kind = "NaN" if np.isnan(bad) else "inf"
    with pytest.raises(ValueError, match=f"{name} contains {kind}"):
        ENTRY_POINTS[entry](fn, p, x1, x2)
    assert fn.calls == 0  # nothing was traced or run


ALL_ENTRY_POINTS = {
    **ENTRY_POINTS,
    "ntk_vector_product": lambda fn, p, x1, x2: ntk_vector_product(
        fn, p, x1, np.ones((x1.shape[0], 2))
    ),
    "ntk_diagonal_blocks": lambda fn, p, x1, x2: ntk_diagonal_blocks(fn, p, x1),
}


@pytest.mark.parametrize("entry", sorted(ALL_ENTRY_POINTS))
def test_logits_with_auxiliary_outputs_are_a_type_error(problem, entry):
    params, x = problem

    def with_aux(p, x):
        return x @ p["w"] + p["b"], {"norm": jnp.sum(x**2)}

    with pytest.raises(TypeError, match="one array of logits"):
        ALL_ENTRY_POINTS[entry](with_aux, params, x, None)


@pytest.mark.parametrize("entry", sorted(ALL_ENTRY_POINTS))
def test_integer_parameters_are_a_type_error(problem, entry):
    # (the matrix-free products were silently zero: an integer leaf has no derivative)
    params, x = problem
    ints = {"w": np.ones((4, 2), np.int32), "b": np.zeros(2, np.int32)}
    with pytest.raises(TypeError, match="floating point"):
        ALL_ENTRY_POINTS[entry](CountingModel(), ints, x, None)


@pytest.mark.parametrize("entry", sorted(ALL_ENTRY_POINTS))
def test_complex_parameters_are_a_type_error(problem, entry):
    # (J J^T of JAX's conjugated gradients is not the kernel of the real and imaginary parts:
    # for real(x @ w) + imag(x @ w) the kernel is 2 x x^T, that product was -2i x x^T)
    params, x = problem
    complex_params = {k: jnp.asarray(v, jnp.complex64) for k, v in params.items()}

    def real_part(p, x):
        y = x.astype(jnp.complex64) @ p["w"] + p["b"]
        return jnp.real(y) + jnp.imag(y)

    with pytest.raises(TypeError, match="real floating point"):
        ALL_ENTRY_POINTS[entry](real_part, complex_params, x, None)


def test_compute_with_plan_checks_its_own_arguments(problem):
    params, x = problem
    fn = CountingModel()
    plan = plan_ntk(fn, params, x)
    calls = fn.calls
    with pytest.raises(ValueError, match="x1 contains NaN"):
        compute_with_plan(plan, fn, params, poisoned(x, np.nan))
    with pytest.raises(ValueError, match=r"params\['b'\] contains inf"):
        compute_with_plan(plan, fn, {**params, "b": jnp.array([0.0, jnp.inf])}, x)
    assert fn.calls == calls


def test_integer_inputs_and_finite_values_pass(problem):
    params, x = problem
    k = empirical_ntk(CountingModel(), params, x)
    xf = x.astype(np.float64)
    want = (xf @ xf.T + 1.0) * np.ones(1)  # Theta_cc = x.x' + 1 for every logit (bias)
    np.testing.assert_allclose(k, want, rtol=1e-5)


def test_numpy_scalar_arguments(problem):
    params, x = problem
    fn = CountingModel()
    a = plan_ntk(fn, params, x, block_size=np.int64(2), memory_budget=np.float32(1e9))
    assert a.block_size == 2
    x = x[:4]  # K = X X^T + 1 of 4 examples in 4 dimensions: definite
    y = np.array([1.0, -1.0, 0.5, 2.0])
    ref = supervision_complexity_matfree(fn, params, x, y, trace_samples=0, tol=1e-6)
    got = supervision_complexity_matfree(
        fn,
        params,
        x,
        y,
        tol=np.float32(1e-6),
        max_iters=np.int64(100),
        trace_samples=np.int32(0),
        ridge=np.float64(0.0),
        seed=np.int64(1),
        block_size=np.int64(3),
    )
    assert got.value == pytest.approx(ref.value, rel=1e-6)
    with pytest.raises(TypeError, match="max_iters"):
        supervision_complexity_matfree(fn, params, x, y, max_iters=10.0)
    with pytest.raises(TypeError, match="targets must be real"):
        supervision_complexity_matfree(fn, params, x, y * 1j)
    with pytest.raises(ValueError, match="targets is empty"):
        supervision_complexity_matfree(fn, params, x, np.zeros((4, 0)))


def identity(r):
    return r


def test_pcg_negative_curvature_beyond_round_off_names_the_rayleigh_quotient():
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    k = (q * np.array([1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2, -0.1])) @ q.T
    b = q[:, -1:] + 0.1 * q[:, :1]  # mostly along the negative direction
    with pytest.raises(ValueError, match="not positive semi-definite") as info:
        _pcg(
            lambda v: k @ v,
            b,
            identity,
            _Reducer("mean"),
            1e-8,
            50,
            psd_tol=1e-6,
            lam_floor=float(np.max(np.diag(k))),  # as the solver passes from the Jacobi blocks
        )
    assert "p^T K p / p^T p = -" in str(info.value)
    # The same kernel with the rule of the dense solver: the same verdict.
    with pytest.raises(ValueError, match="not positive semi-definite"):
        supervision_complexity(k, b)


def test_pcg_on_a_psd_kernel_within_round_off_converges():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(10, 10))
    k = a @ a.T + 0.5 * np.eye(10)
    b = rng.normal(size=(10, 2))
    x, _, residual = _pcg(lambda v: k @ v, b, identity, _Reducer("mean"), 1e-10, 100, psd_tol=1e-6)
    assert residual <= 1e-10
    np.testing.assert_allclose(x, np.linalg.solve(k, b), rtol=1e-7)


def test_pcg_rule_is_per_system_for_per_logit_kernels():
    # Logit 0: a large definite kernel; logit 1: a small kernel with lambda_min = -0.1 lambda_max.
    # One scale for both would hide logit 1's negative curvature (-0.01 vs 1000 * 1e-4).
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    k0 = (q * np.linspace(1000.0, 100.0, 6)) @ q.T
    k1 = (q * np.array([0.1, 0.08, 0.06, 0.05, 0.04, -0.01])) @ q.T
    b = np.stack([rng.normal(size=6), q[:, -1] + 0.1 * q[:, 0]], axis=1)

    def apply(v):
        return np.stack([k0 @ v[:, 0], k1 @ v[:, 1]], axis=1)

    floors = np.array([[np.max(np.diag(k0)), np.max(np.diag(k1))]])
    with pytest.raises(ValueError, match="not positive semi-definite"):
        _pcg(apply, b, identity, _Reducer("diag"), 1e-8, 50, psd_tol=1e-4, lam_floor=floors)
