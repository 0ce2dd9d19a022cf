"""`patch_conv` against XLA's convolution operator (float64), its derivatives and its HLO."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from sdcomplex.models import create_model, patch_conv

CASES = [
    # (spatial, window, c_in, c_out, strides, padding, rhs_dilation)
    ((9, 9), (3, 3), 3, 4, (1, 1), "SAME", (1, 1)),
    ((10, 11), (5, 5), 3, 6, (1, 1), "VALID", (1, 1)),
    ((9, 9), (3, 3), 4, 5, (2, 2), "SAME", (1, 1)),
    ((9, 8), (3, 2), 4, 5, (2, 1), ((1, 2), (0, 1)), (2, 1)),
    ((12,), (3,), 2, 3, (1,), "SAME", (1,)),
    ((5, 6, 4), (2, 3, 2), 2, 3, (1, 2, 1), "SAME", (1, 1, 1)),
]


def _numbers(rank: int) -> tuple[str, str, str]:
    spatial = "HWD"[: rank - 2]
    return ("N" + spatial + "C", spatial + "IO", "N" + spatial + "C")


def _operands(case, seed=0):
    spatial, window, cin, cout, *_ = case
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(2, *spatial, cin)), jnp.float64)
    w = jnp.asarray(rng.normal(size=(*window, cin, cout)), jnp.float64)
    return x, w


def _pair(case):
    _, _, _, _, strides, padding, dilation = case
    numbers = _numbers(len(strides) + 2)

    def ours(x, w):
        return patch_conv(x, w, strides, padding, rhs_dilation=dilation, dimension_numbers=numbers)

    def reference(x, w):
        return lax.conv_general_dilated(
            x, w, strides, padding, rhs_dilation=dilation, dimension_numbers=numbers
        )

    return ours, reference


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize("case", CASES)
def test_patch_conv_matches_lax_convolution(case):
    x, w = _operands(case)
    ours, reference = _pair(case)
    np.testing.assert_allclose(jax.jit(ours)(x, w), reference(x, w), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_patch_conv_derivatives_match_lax_convolution(case):
    x, w = _operands(case)
    ours, reference = _pair(case)
    v = jnp.ones_like(w)

    def derivatives(conv):
        """Gradients w.r.t. x, w and both, forward mode and a second derivative
        (Hessian-vector product in the kernel), compiled as one program."""

        def loss(x, w):
            return jnp.sum(jnp.sin(conv(x, w)))

        @jax.jit
        def all_of_them(x, w):
            grads = [jax.grad(loss, argnums)(x, w) for argnums in (0, 1, (0, 1))]
            jvp = jax.jvp(lambda w: conv(x, w), (w,), (v,))[1]
            hvp = jax.jvp(jax.grad(lambda w: loss(x, w)), (w,), (v,))[1]
            return grads, jvp, hvp

        return all_of_them(x, w)

    got_grads, got_jvp, got_hvp = derivatives(ours)
    want_grads, want_jvp, want_hvp = derivatives(reference)
    for got, want in zip(got_grads, want_grads, strict=True):
        for g, r in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got_jvp, want_jvp, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got_hvp, want_hvp, rtol=1e-10, atol=1e-12)


def test_patch_conv_on_cpu_uses_matrix_multiplies_except_for_the_input_gradient():
    case = CASES[1]
    x, w = _operands(case)
    ours, _ = _pair(case)

    def hlo(fn):
        return jax.jit(fn).lower(x, w).compile().as_text()

    def uses_convolution(text):
        return any(" convolution(" in line for line in text.splitlines())

    assert not uses_convolution(hlo(ours))
    assert not uses_convolution(hlo(jax.grad(lambda x, w: jnp.sum(ours(x, w) ** 2), 1)))
    # The input gradient is XLA's convolution (the transpose of the input tangent).
    assert uses_convolution(hlo(jax.grad(lambda x, w: jnp.sum(ours(x, w) ** 2), 0)))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"feature_group_count": 2},
        {"lhs_dilation": (2, 2)},
    ],
)
def test_unsupported_configurations_fall_back_to_lax(kwargs):
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(2, 6, 6, 4)))
    w = jnp.asarray(rng.normal(size=(3, 3, 4 // kwargs.get("feature_group_count", 1), 4)))
    args = (x, w, (1, 1), ((1, 1), (1, 1)))
    numbers = ("NHWC", "HWIO", "NHWC")
    got = patch_conv(*args, dimension_numbers=numbers, **kwargs)
    want = lax.conv_general_dilated(*args, dimension_numbers=numbers, **kwargs)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_channels_first_layout_falls_back_to_lax():
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(2, 3, 7, 7)))
    w = jnp.asarray(rng.normal(size=(4, 3, 3, 3)))
    args = (x, w, (1, 1), "VALID")
    got = patch_conv(*args, dimension_numbers=("NCHW", "OIHW", "NCHW"))
    want = lax.conv_general_dilated(*args, dimension_numbers=("NCHW", "OIHW", "NCHW"))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_flax_conv_with_patch_conv_has_the_same_parameters_and_outputs():
    x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 8, 8, 3)))
    plain = nn.Conv(5, (3, 3), padding="VALID")
    patched = nn.Conv(5, (3, 3), padding="VALID", conv_general_dilated=patch_conv)
    variables = plain.init(jax.random.PRNGKey(0), x)
    assert jax.tree.map(jnp.shape, patched.init(jax.random.PRNGKey(0), x)) == jax.tree.map(
        jnp.shape, variables
    )
    np.testing.assert_allclose(
        patched.apply(variables, x), plain.apply(variables, x), rtol=1e-12, atol=1e-12
    )


def test_lenet_gradients_match_the_lax_convolution_model(monkeypatch, random_variables):
    import sdcomplex.models._lenet as lenet

    model = create_model("lenet5", num_classes=3, width=1)
    variables = random_variables(model, (16, 16, 3))  # values of the initialisers' scale
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), variables["params"])
    x = jnp.asarray(np.random.default_rng(4).normal(size=(3, 16, 16, 3)))

    def loss(p):
        return jnp.sum(model.apply({"params": p}, x) ** 2)

    # compiled, not op by op; each jax.jit traces anew, so the second sees the patched module
    got = jax.jit(jax.grad(loss))(params)
    monkeypatch.setattr(lenet, "patch_conv", None)  # nn.Conv's default operator
    want = jax.jit(jax.grad(loss))(params)
    for g, r in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-12)
