"""empirical_ntk against closed forms, finite differences and across implementations."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from sdcomplex.ntk import (
    CostEstimate,
    available_implementations,
    default_memory_budget,
    empirical_ntk,
    flatten_full_kernel,
    plan_ntk,
    register_implementation,
    unflatten_full_kernel,
)
from sdcomplex.ntk._jacobian import JacobianContraction

IMPLS = ("jacobian", "ntvp")


def linear(w, x):
    return x @ w


def mlp(params, x):
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    return h @ params["w2"] + params["b2"]


def mlp_params(seed=0, d=5, h=7, c=3, dtype=jnp.float32):
    r = np.random.default_rng(seed)
    return {
        "w1": jnp.asarray(r.normal(size=(d, h)) / np.sqrt(d), dtype),
        "b1": jnp.asarray(r.normal(size=h) * 0.1, dtype),
        "w2": jnp.asarray(r.normal(size=(h, c)) / np.sqrt(h), dtype),
        "b2": jnp.asarray(r.normal(size=c) * 0.1, dtype),
    }


def inputs(n, d=5, seed=1):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


@pytest.mark.parametrize("impl", IMPLS)
def test_linear_model_closed_form(impl):
    x1, x2 = inputs(6, 4), inputs(5, 4, seed=2)
    w = jnp.zeros((4, 3))
    gram = x1 @ x2.T
    full = empirical_ntk(linear, w, x1, x2, outputs="full", implementation=impl)
    np.testing.assert_allclose(full, gram[:, :, None, None] * np.eye(3), rtol=1e-5, atol=1e-5)
    mean = empirical_ntk(linear, w, x1, x2, outputs="mean", implementation=impl)
    np.testing.assert_allclose(mean, gram, rtol=1e-5, atol=1e-5)
    diag = empirical_ntk(linear, w, x1, x2, outputs="diag", implementation=impl)
    np.testing.assert_allclose(diag, np.broadcast_to(gram, (3, 6, 5)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
def test_mean_full_diag_agree(impl):
    p, x = mlp_params(), inputs(6)
    full = empirical_ntk(mlp, p, x, outputs="full", implementation=impl)
    diag = empirical_ntk(mlp, p, x, outputs="diag", implementation=impl)
    mean = empirical_ntk(mlp, p, x, outputs="mean", implementation=impl)
    fdiag = np.moveaxis(np.diagonal(full, axis1=2, axis2=3), -1, 0)
    np.testing.assert_allclose(diag, fdiag, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mean, diag.mean(0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("outputs", ["mean", "full", "diag"])
def test_implementations_agree(outputs):
    p, x1, x2 = mlp_params(), inputs(7), inputs(4, seed=3)
    a = empirical_ntk(mlp, p, x1, x2, outputs=outputs, implementation="jacobian")
    b = empirical_ntk(mlp, p, x1, x2, outputs=outputs, implementation="ntvp")
    assert np.max(np.abs(a - b)) <= 1e-5 * np.max(np.abs(a))


def test_finite_differences_float64():
    with jax.enable_x64(True):
        p, x = mlp_params(dtype=jnp.float64), inputs(4).astype(np.float64)
        kernel = empirical_ntk(mlp, p, x, outputs="full", implementation="jacobian")
        assert kernel.dtype == np.float64
        flat, unravel = ravel_pytree(p)
        eps = 1e-6
        jac = np.zeros((4, 3, flat.size))
        for k in range(flat.size):
            e = np.zeros(flat.size)
            e[k] = eps
            up = np.asarray(mlp(unravel(flat + e), x))
            down = np.asarray(mlp(unravel(flat - e), x))
            jac[:, :, k] = (up - down) / (2 * eps)
    reference = np.einsum("icp,jdp->ijcd", jac, jac)
    np.testing.assert_allclose(kernel, reference, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("outputs", ["mean", "full", "diag"])
def test_blocked_equals_unblocked(impl, outputs):
    p, x1, x2 = mlp_params(), inputs(7), inputs(5, seed=4)
    for second in (None, x2):
        whole = empirical_ntk(mlp, p, x1, second, outputs=outputs, implementation=impl)
        for block in (1, 2, 3):
            blocked = empirical_ntk(
                mlp, p, x1, second, outputs=outputs, implementation=impl, block_size=block
            )
            np.testing.assert_allclose(blocked, whole, rtol=1e-6, atol=1e-6)


def test_symmetric_kernel_is_symmetric_and_psd():
    k = empirical_ntk(mlp, mlp_params(), inputs(9), block_size=4)
    np.testing.assert_array_equal(k, k.T)
    assert np.linalg.eigvalsh(k.astype(np.float64)).min() > -1e-4 * np.trace(k)


def test_single_output_function():
    def scalar_fn(w, x):
        return (x @ w)[:, 0]

    x = inputs(3, 4)
    k = empirical_ntk(scalar_fn, jnp.ones((4, 1)), x, outputs="full")
    assert k.shape == (3, 3, 1, 1)
    np.testing.assert_allclose(k[:, :, 0, 0], x @ x.T, rtol=1e-5)


def test_flatten_full_kernel_convention():
    full = np.random.default_rng(0).normal(size=(3, 2, 4, 4))
    flat = flatten_full_kernel(full)
    assert flat.shape == (12, 8)
    for i, j, c, d in [(0, 0, 0, 0), (2, 1, 3, 1), (1, 0, 2, 3)]:
        assert flat[i * 4 + c, j * 4 + d] == full[i, j, c, d]
    np.testing.assert_array_equal(unflatten_full_kernel(flat, 4), full)
    with pytest.raises(ValueError, match="full kernel"):
        flatten_full_kernel(np.ones((3, 3)))
    with pytest.raises(ValueError, match="outputs"):
        unflatten_full_kernel(np.ones((5, 5)), 2)


def test_auto_prefers_cheaper_and_respects_memory_budget():
    p, x = mlp_params(), inputs(8)
    plan = plan_ntk(mlp, p, x)
    assert plan.implementation == min(plan.estimates, key=lambda k: plan.estimates[k][0])
    # A budget too small for one example's Jacobian rows excludes the Jacobian contraction.
    tiny = plan_ntk(mlp, p, x, outputs="full", memory_budget=200)
    assert tiny.implementation != "jacobian"
    rows = plan_ntk(mlp, p, x, implementation="jacobian", memory_budget=2 * 4 * 61)
    assert rows.block_size == 1


def test_default_memory_budget_is_a_quarter_of_physical_memory_on_cpu():
    if jax.devices()[0].platform != "cpu":
        pytest.skip("the CPU rule only")
    try:
        line = next(l for l in open("/proc/meminfo") if l.startswith("MemTotal:"))
    except (OSError, StopIteration):
        pytest.skip("no /proc/meminfo to compare with")
    total = int(line.split()[1]) * 1024  # kB
    budget = default_memory_budget()
    assert budget == max(1024**3, total // 4) or abs(budget - total / 4) < 0.01 * total
    # None means that default; the plan is the same as with the explicit value
    p, x = mlp_params(), inputs(8)
    assert plan_ntk(mlp, p, x) == plan_ntk(mlp, p, x, memory_budget=budget)


@dataclasses.dataclass(frozen=True)
class _CheapJacobian(JacobianContraction):
    name: str = "test-cheap"

    def estimate(self, size):
        return CostEstimate(flops=1.0, bytes_per_example=1.0)


def test_registered_implementation_is_picked_by_auto():
    register_implementation(_CheapJacobian(), overwrite=True)
    try:
        assert "test-cheap" in available_implementations()
        plan = plan_ntk(mlp, mlp_params(), inputs(4))
        assert plan.implementation == "test-cheap"
        k = empirical_ntk(mlp, mlp_params(), inputs(4))
        ref = empirical_ntk(mlp, mlp_params(), inputs(4), implementation="ntvp")
        np.testing.assert_allclose(k, ref, rtol=1e-5)
        with pytest.raises(ValueError, match="already registered"):
            register_implementation(_CheapJacobian())
    finally:
        from sdcomplex.ntk import _engine

        _engine._REGISTRY.pop("test-cheap", None)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"outputs": "trace"}, "unknown outputs"),
        ({"implementation": "magic"}, "unknown NTK implementation"),
        ({"block_size": 0}, "block_size"),
        ({"memory_budget": 0}, "memory_budget"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        empirical_ntk(mlp, mlp_params(), inputs(3), **kwargs)


def test_bad_inputs():
    p = mlp_params()
    with pytest.raises(ValueError, match="same example shape"):
        empirical_ntk(mlp, p, inputs(3), inputs(3, d=5)[:, :4])
    with pytest.raises(ValueError, match="empty"):
        empirical_ntk(mlp, p, inputs(3)[:0])
    with pytest.raises(TypeError, match="batch axis"):
        empirical_ntk(mlp, p, 3.0)
    with pytest.raises(ValueError, match=r"\(batch, C\)"):
        empirical_ntk(lambda q, x: mlp(q, x)[:, :, None], p, inputs(3))
    with pytest.raises(TypeError, match="floating point"):
        empirical_ntk(lambda q, x: x * q, jnp.ones(5, jnp.int32), inputs(3))


def log_model(params, x):
    return jnp.log(x) @ params["w1"]  # not finite where an input is <= 0


@pytest.mark.parametrize("impl", ("jacobian", "ntvp", "auto"))
@pytest.mark.parametrize("outputs", ("mean", "full", "diag"))
def test_a_kernel_that_is_not_finite_is_an_error_naming_the_examples(impl, outputs):
    params = mlp_params()
    x = np.abs(inputs(9)) + 0.5
    bad = x.copy()
    bad[[2, 7], 1] = -1.0  # log(-1) = nan at examples 2 and 7
    with pytest.raises(ValueError, match=r"not finite at examples \[2, 7\] of x1, though"):
        empirical_ntk(log_model, params, bad, outputs=outputs, implementation=impl)
    with pytest.raises(ValueError, match=r"not finite at examples \[2, 7\] of x2, though"):
        empirical_ntk(log_model, params, x[:4], bad, outputs=outputs, implementation=impl)
    k = empirical_ntk(log_model, params, x, outputs=outputs, implementation=impl)
    assert np.all(np.isfinite(k))


def test_the_finiteness_check_reads_row_slabs_and_names_partial_rows():
    from sdcomplex.ntk._assemble import check_finite_kernel

    k = np.ones((7, 5))
    check_finite_kernel(k, cross=True, rows_per_check=2)  # finite: no error
    k[:, 3] = np.inf  # a column throughout: example 3 of x2
    k[4] = np.nan  # a row throughout: example 4 of x1
    with pytest.raises(ValueError, match=r"examples \[4\] of x1 and examples \[3\] of x2"):
        check_finite_kernel(k, cross=True, rows_per_check=2)
    k = np.ones((7, 5))
    k[5, 1] = np.nan  # one pair
    with pytest.raises(ValueError, match=r"some pairs in the rows of examples \[5\] of x1"):
        check_finite_kernel(k, cross=False, rows_per_check=3)
