"""The structured engine (and ``"auto"``) on inputs and derivatives outside plain float32 maths.

Integer and boolean inputs, float32 inputs into float64 parameters, ``jax.custom_vjp`` and
straight-through (``jax.custom_jvp``) parameters: kernels equal to a float64 reference built
here from per-example ``jax.jacrev`` Jacobians (the custom rules included), in every output form.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdcomplex.ntk import empirical_ntk, plan_ntk

FORMS = ("mean", "full", "diag")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def normal(rng, *shape):
    scale = 1.0 / math.sqrt(max(1, math.prod(shape[:-1])))
    return jnp.asarray(rng.standard_normal(shape) * scale, jnp.float32)


def reference(fn, params, x, outputs):
    """Float64 kernel from per-example reverse-mode Jacobians, in the form ``outputs``."""
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        if jnp.issubdtype(x.dtype, jnp.floating):
            x = jnp.asarray(x, jnp.float64)
        rows = []
        for xi in x:
            jac = jax.jacrev(lambda p, xi=xi: fn(p, xi[None]).reshape(-1))(p64)
            rows.append(
                np.concatenate([np.reshape(j, (j.shape[0], -1)) for j in jax.tree.leaves(jac)], 1)
            )
    j = np.stack(rows)  # (n, C, P)
    full = np.einsum("icp,jdp->ijcd", j, j)
    if outputs == "full":
        return full
    diag = np.moveaxis(np.diagonal(full, axis1=2, axis2=3), -1, 0)
    return diag.mean(0) if outputs == "mean" else diag


def assert_close(a, b, rtol):
    err = float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))
    assert err <= rtol, f"relative error {err:.2e} > {rtol:.0e}"


def check(fn, params, x, implementations=("auto", "structured"), rtol=1e-5):
    for outputs in FORMS:
        expected = reference(fn, params, x, outputs)
        for implementation in implementations:
            kernel = empirical_ntk(fn, params, x, outputs=outputs, implementation=implementation)
            assert_close(kernel, expected, rtol)


def test_integer_inputs_into_a_dense_site(rng):
    # An int32 batch times float32 weights: the site's input is integer, its Gram must not be
    params = {"w": normal(rng, 3, 4), "o": normal(rng, 4, 2)}
    x = jnp.asarray(rng.integers(0, 7, (5, 3)), jnp.int32)

    def net(p, x):
        return jnp.tanh(x @ p["w"]) @ p["o"]

    assert plan_ntk(net, params, x).implementation == "structured"
    check(net, params, x)


@pytest.mark.slow
def test_integer_and_boolean_inputs_elsewhere(rng):
    emb = {"e": normal(rng, 7, 4), "o": normal(rng, 4, 2)}
    tokens = jnp.asarray(rng.integers(0, 7, (5, 3)), jnp.int32)

    def embedding(p, x):
        return jnp.tanh(p["e"][x].sum(1)) @ p["o"]

    check(embedding, emb, tokens)
    signs = {"w": normal(rng, 4, 3)}
    mask = jnp.asarray(rng.integers(0, 2, (5, 4)), jnp.bool_)

    def masked(p, x):
        return jnp.tanh(jnp.where(x, 1.0, -1.0) @ p["w"])

    check(masked, signs, mask)
    check(masked, signs, mask[:1])  # one example


def test_interacting_integer_examples_raise(rng):
    params = {"e": normal(rng, 7, 4)}
    tokens = jnp.asarray(rng.integers(0, 6, (4, 3)), jnp.int32)

    def coupled(p, x):
        h = p["e"][x].sum(1)
        return h - h.mean(0)

    with pytest.raises(ValueError, match="examples interact"):
        plan_ntk(coupled, params, tokens, implementation="structured")


@jax.custom_vjp
def _sine_layer(x, w):
    return jnp.sin(x @ w)


def _sine_forward(x, w):
    return _sine_layer(x, w), (x, w)


def _sine_backward(res, g):
    x, w = res
    d = g * jnp.cos(x @ w)
    return d @ w.T, x.T @ d


_sine_layer.defvjp(_sine_forward, _sine_backward)


def test_custom_vjp_function(rng):
    # No forward mode: the independence check compares logits instead of tangents, and
    # "auto" does not pick the NTK-vector products (forward mode), which refuse the function
    params = {"a": normal(rng, 4, 3), "w": normal(rng, 4, 5), "o": normal(rng, 5, 3)}
    x = normal(rng, 5, 4)

    def net(p, x):
        return jnp.tanh(x @ p["a"]) + _sine_layer(x, p["w"]) @ p["o"]

    check(net, params, x)
    with pytest.raises(TypeError, match="forward-mode"):
        plan_ntk(net, params, x, implementation="ntvp")


@jax.custom_jvp
def _quantise(w):
    return jnp.round(w * 4) / 4


_quantise.defjvp(lambda primals, tangents: (_quantise(primals[0]), tangents[0]))


def test_straight_through_parameters(rng):
    # The kernel follows the custom rule (identity), not the primal's (round: zero)
    params = {"w": normal(rng, 4, 5), "o": normal(rng, 5, 3)}
    x = normal(rng, 5, 4)

    def net(p, x):
        return jnp.tanh(x @ _quantise(p["w"])) @ _quantise(p["o"])

    check(net, params, x)


def test_float32_inputs_into_float64_parameters(rng):
    with jax.enable_x64(True):
        params = {
            "w": jnp.asarray(rng.standard_normal((4, 5)), jnp.float64),
            "o": jnp.asarray(rng.standard_normal((5, 3)), jnp.float64),
        }
        x = normal(rng, 5, 4)  # float32

        def net(p, x):
            return jnp.tanh(x @ p["w"]) @ p["o"]

        check(net, params, x, implementations=("structured",), rtol=1e-12)


def test_python_scalar_parameters(rng):
    # Python floats are weakly typed leaves (under jit as when planning)
    params = {"s": 2.0, "w": normal(rng, 4, 2), "t": 0.5}
    x = normal(rng, 4, 4)

    def net(p, x):
        return jnp.tanh(x * p["s"] @ p["w"]) * p["t"]

    check(net, params, x)


@jax.custom_jvp
def _half_weight_product(x, w):
    return x @ w


@_half_weight_product.defjvp
def _half_weight_product_jvp(primals, tangents):
    (x, w), (dx, dw) = primals, tangents
    return x @ w, dx @ w + 0.5 * (x @ dw)  # not the derivative of the primal in w


@jax.custom_jvp
def _exact_product(x, w):
    return x @ w


@_exact_product.defjvp
def _exact_product_jvp(primals, tangents):
    (x, w), (dx, dw) = primals, tangents
    return x @ w, dx @ w + x @ dw


def test_a_custom_rule_around_a_site_is_followed(rng):
    # A dense site inside a custom_jvp is differentiated by the rule, not by its primal maths;
    # a rule that is the primal's derivative keeps its site
    params = {"w": normal(rng, 4, 5), "o": normal(rng, 5, 3)}
    x = normal(rng, 5, 4)

    def scaled(p, x):
        return jnp.tanh(_half_weight_product(x, p["w"])) @ p["o"]

    def exact(p, x):
        return jnp.tanh(_exact_product(x, p["w"])) @ p["o"]

    check(scaled, params, x, implementations=("structured",))
    check(exact, params, x, implementations=("structured",))
    analysis = plan_ntk(exact, params, x, implementation="structured").prepared.analysis
    assert {s.leaf for s in analysis.sites} == {0, 1} and analysis.fallback == ()
    analysis = plan_ntk(scaled, params, x, implementation="structured").prepared.analysis
    assert analysis.fallback == (1,)  # leaves in key order: "o", "w"
