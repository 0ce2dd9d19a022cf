"""Matrix-free supervision complexity against the dense float64 solve on small problems."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdcomplex.complexity import supervision_complexity, supervision_complexity_matfree
from sdcomplex.models import create_model, init_variables
from sdcomplex.ntk import _matfree as matfree_module
from sdcomplex.ntk import (
    empirical_ntk,
    flatten_full_kernel,
    flax_ntk_fn,
    ntk_diagonal_blocks,
    ntk_vector_product,
)
from sdcomplex.ntk._matfree import _Operator

N, C = 16, 3


@pytest.fixture(scope="module")
def flax_problem():
    model = create_model("cnn", num_classes=C, channels=(4,), dense_width=16, batch_norm=True)
    variables = init_variables(model, jax.random.key(0), (12,))
    fn, params = flax_ntk_fn(model, variables)
    x = np.random.default_rng(0).normal(size=(N, 12)).astype(np.float32)
    y = np.eye(C)[np.random.default_rng(1).integers(0, C, N)]
    full = empirical_ntk(fn, params, x, outputs="full", implementation="jacobian")
    return fn, params, x, y, full


def plain_mlp(params, x):
    return jnp.tanh(x @ params["w1"]) @ params["w2"]


@pytest.fixture(scope="module")
def plain_problem():
    r = np.random.default_rng(2)
    params = {
        "w1": jnp.asarray(r.normal(size=(5, 32)) / np.sqrt(5), jnp.float32),
        "w2": jnp.asarray(r.normal(size=(32, C)) / np.sqrt(32), jnp.float32),
    }
    x = r.normal(size=(10, 5)).astype(np.float32)
    y = r.normal(size=(10, C))
    full = empirical_ntk(plain_mlp, params, x, outputs="full", implementation="jacobian")
    return plain_mlp, params, x, y, full


def forms(full):
    diag = np.moveaxis(np.diagonal(full, axis1=2, axis2=3), -1, 0)
    return {"full": full, "diag": diag, "mean": diag.mean(0)}


@pytest.mark.parametrize("outputs", ["mean", "full", "diag"])
@pytest.mark.parametrize("problem", ["flax_problem", "plain_problem"])
def test_agrees_with_dense_solve(problem, outputs, request):
    fn, params, x, y, full = request.getfixturevalue(problem)
    dense = supervision_complexity(forms(full)[outputs], y)
    result = supervision_complexity_matfree(fn, params, x, y, outputs=outputs, tol=1e-6)
    assert result.relative_residual <= 1e-6 and result.iterations >= 1
    assert abs(result.value - dense.value) <= 1e-4 * dense.value
    assert result.trace_exact == pytest.approx(dense.trace, rel=1e-5)
    # Hutchinson's estimate lies within 4 standard errors of the exact trace (fixed seed).
    assert abs(result.trace - dense.trace) <= 4 * result.trace_stderr
    assert 0 < result.trace_stderr < 0.5 * result.trace
    expected = np.sqrt(result.value * result.trace) / N if problem == "flax_problem" else None
    if expected is not None:
        assert result.adjusted == pytest.approx(expected)


def test_plain_cg_ridge_offset_and_exact_trace(flax_problem):
    fn, params, x, y, full = flax_problem
    f0 = np.asarray(fn(params, x), np.float64)
    dense = supervision_complexity(forms(full)["mean"], y, offset=f0, ridge=1e-3)
    result = supervision_complexity_matfree(
        fn, params, x, y, offset=f0, ridge=1e-3, preconditioner="none", trace_samples=0
    )
    assert result.residual and result.ridge == 1e-3 and result.preconditioner == "none"
    assert abs(result.value - dense.value) <= 1e-4 * dense.value
    assert result.trace == pytest.approx(dense.trace, rel=1e-5) and result.trace_stderr == 0
    assert result.adjusted == pytest.approx(dense.adjusted, rel=1e-4)


@pytest.mark.parametrize("outputs", ["mean", "diag"])
def test_a_zero_target_column_with_a_ridge(plain_problem, outputs):
    # A class absent from the targets is a zero right-hand side: its CG direction stays 0, whose
    # Rayleigh quotient of K + ridge n I minus the ridge is not a curvature of the kernel.
    fn, params, x, y, full = plain_problem
    y = y.copy()
    y[:, 2] = 0.0
    dense = supervision_complexity(forms(full)[outputs], y, ridge=1e-3)
    result = supervision_complexity_matfree(
        fn, params, x, y, outputs=outputs, ridge=1e-3, tol=1e-6, trace_samples=0
    )
    assert abs(result.value - dense.value) <= 1e-4 * dense.value
    zero = supervision_complexity_matfree(
        fn, params, x, np.zeros_like(y), outputs="full", ridge=1e-3, trace_samples=0
    )
    assert zero.value == 0.0 and zero.relative_residual == 0.0


@pytest.mark.parametrize("problem", ["flax_problem", "plain_problem"])
def test_vector_products_and_diagonal_blocks(problem, request):
    fn, params, x, _, full = request.getfixturevalue(problem)
    n = x.shape[0]
    v = np.random.default_rng(3).normal(size=(n, C))
    k = forms(full)
    scale = np.max(np.abs(full)) * np.max(np.abs(v)) * n
    got = ntk_vector_product(fn, params, x, v, outputs="full", block_size=4)
    want = (flatten_full_kernel(full) @ v.reshape(-1)).reshape(n, C)
    assert np.max(np.abs(got - want)) <= 1e-5 * scale
    got = ntk_vector_product(fn, params, x, v, outputs="diag", block_size=3)
    want = np.einsum("cij,jc->ic", k["diag"], v)
    assert np.max(np.abs(got - want)) <= 1e-5 * scale
    got = ntk_vector_product(fn, params, x, v[:, :2], outputs="mean")
    assert np.max(np.abs(got - k["mean"] @ v[:, :2])) <= 1e-5 * scale
    blocks = ntk_diagonal_blocks(fn, params, x, block_size=3)
    want = full[np.arange(n), np.arange(n)]
    assert np.max(np.abs(blocks - want)) <= 1e-5 * np.max(np.abs(want))


def test_not_converged_raises(flax_problem):
    fn, params, x, y, _ = flax_problem
    with pytest.raises(RuntimeError, match="did not reach the relative residual"):
        supervision_complexity_matfree(fn, params, x, y, max_iters=2, trace_samples=0)


@pytest.fixture
def count_products(monkeypatch):
    """The list of calls of the kernel-vector product (`_Operator.matvec`) made from now on."""
    calls = []
    matvec = _Operator.matvec

    def counting(self, mode, v):
        calls.append(mode)
        return matvec(self, mode, v)

    monkeypatch.setattr(_Operator, "matvec", counting)
    return calls


@pytest.mark.parametrize("outputs", ["mean", "full"])
def test_max_iters_bounds_every_kernel_vector_product(plain_problem, count_products, outputs):
    # max_iters counts every product of the solve, the fresh residual checks included; the
    # error names the number used, which is the number counted.
    fn, params, x, y, _ = plain_problem
    for max_iters in (1, 2, 3, 5):
        count_products.clear()
        with pytest.raises(RuntimeError, match="did not reach") as err:
            supervision_complexity_matfree(
                fn, params, x, y, outputs=outputs, tol=1e-12, max_iters=max_iters,
                preconditioner="none", trace_samples=0,
            )  # fmt: skip
        used = len(count_products)
        assert 1 <= used <= max_iters, (max_iters, used)
        assert f"in {used} kernel-vector products (max_iters={max_iters};" in str(err.value)
    # A converged solve reports the products it used, and the same solve within exactly that
    # many products gives the same answer.
    count_products.clear()
    free = supervision_complexity_matfree(fn, params, x, y, outputs=outputs, trace_samples=0)
    assert free.iterations == len(count_products) >= 2
    count_products.clear()
    tight = supervision_complexity_matfree(
        fn, params, x, y, outputs=outputs, trace_samples=0, max_iters=free.iterations
    )
    assert tight.iterations == len(count_products) == free.iterations
    assert tight.value == free.value


def test_the_memory_budget_reaches_the_jacobi_diagonal(flax_problem, monkeypatch):
    # The budget given is the one the diagonal's planner gets (not the default). With 4000
    # bytes a quarter of the budget is below one mean-form right-hand side's C parameter vectors
    # (3 x 475 float32 = 5700 bytes), so the products are also split one right-hand side at a
    # time; the solve is the dense one all the same.
    fn, params, x, y, full = flax_problem
    budgets = []
    plan_ntk = matfree_module.plan_ntk

    def recording(*args, **kwargs):
        budgets.append(kwargs["memory_budget"])
        return plan_ntk(*args, **kwargs)

    monkeypatch.setattr(matfree_module, "plan_ntk", recording)
    dense = supervision_complexity(forms(full)["mean"], y)
    for budget in (4000.0, 1e9):
        budgets.clear()
        result = supervision_complexity_matfree(
            fn, params, x, y, tol=1e-6, trace_samples=0, memory_budget=budget
        )
        assert budgets == [budget]
        assert abs(result.value - dense.value) <= 1e-4 * dense.value
        assert result.trace_exact == pytest.approx(dense.trace, rel=1e-5)


def test_mean_product_with_no_columns_is_empty(plain_problem):
    # K times an (n, 0) matrix is the empty (n, 0) product (the mean form takes any R).
    fn, params, x, _, _ = plain_problem
    got = ntk_vector_product(fn, params, x, np.ones((x.shape[0], 0)), outputs="mean")
    assert got.shape == (x.shape[0], 0) and got.dtype == np.float64
    with pytest.raises(ValueError, match=r"v must have shape \(n, 3\) with n = 10, got \(10, 0\)"):
        ntk_vector_product(fn, params, x, np.ones((x.shape[0], 0)), outputs="diag")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"outputs": "trace"}, "unknown outputs"),
        ({"preconditioner": "ilu"}, "unknown preconditioner"),
        ({"tol": 0.0}, "tol"),
        ({"max_iters": 0}, "max_iters"),
        ({"trace_samples": 1}, "trace_samples"),
        ({"ridge": -1.0}, "ridge"),
        ({"offset": np.zeros((4, C))}, "offset"),
        ({"block_size": 0}, "block_size"),
    ],
)
def test_bad_arguments(plain_problem, kwargs, match):
    fn, params, x, y, _ = plain_problem
    with pytest.raises(ValueError, match=match):
        supervision_complexity_matfree(fn, params, x, y, **kwargs)


def test_bad_targets(plain_problem):
    fn, params, x, y, _ = plain_problem
    with pytest.raises(ValueError, match="shape"):
        supervision_complexity_matfree(fn, params, x, y[:5])
    with pytest.raises(ValueError, match="columns"):
        supervision_complexity_matfree(fn, params, x, y[:, :2], outputs="full")
    with pytest.raises(ValueError, match="NaN"):
        supervision_complexity_matfree(fn, params, x, np.full_like(y, np.nan))
    with pytest.raises(ValueError, match="shape"):
        ntk_vector_product(fn, params, x, np.ones((10, 2)), outputs="full")
    with pytest.raises(TypeError, match="v must be real"):  # (its imaginary part was dropped)
        ntk_vector_product(fn, params, x, np.ones((10, C)) * (1 + 1j), outputs="full")


def test_a_kernel_that_is_not_finite_is_an_error_naming_the_examples():
    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.standard_normal((6, 3)), jnp.float32)
    x = np.abs(rng.standard_normal((8, 6))).astype(np.float32) + 0.5
    x[[2, 5], 1] = -1.0  # log(-1) = nan at examples 2 and 5
    y = np.eye(3)[rng.integers(0, 3, 8)]

    def log_model(params, x):
        return jnp.log(x) @ params

    named = r"not finite at examples \[2, 5\] of x, though"
    with pytest.raises(ValueError, match=named):
        ntk_diagonal_blocks(log_model, w, x)
    for outputs in ("mean", "full", "diag"):
        with pytest.raises(ValueError, match=named):
            supervision_complexity_matfree(log_model, w, x, y, outputs=outputs)
        with pytest.raises(ValueError, match="a kernel-vector product holds NaN or inf"):
            supervision_complexity_matfree(
                log_model, w, x, y, outputs=outputs, preconditioner="none", trace_samples=2
            )
        with pytest.raises(ValueError, match="the kernel-vector product holds NaN or inf"):
            ntk_vector_product(log_model, w, x, y, outputs=outputs)
    # the inputs themselves are checked first, for every matrix-free entry point
    with pytest.raises(ValueError, match="x contains NaN"):
        ntk_vector_product(log_model, w, np.full((2, 6), np.nan, np.float32), y[:2])
    with pytest.raises(ValueError, match="v contains NaN"):
        ntk_vector_product(log_model, w, x + 2.0, np.full_like(y, np.nan))
