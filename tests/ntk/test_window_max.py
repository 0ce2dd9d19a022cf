"""`window_max` against ``lax.reduce_window`` max pooling: values and derivatives, ties included."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from sdcomplex.ntk._window_max import is_disjoint_window_max, window_max


def _reference(x, window):
    return lax.reduce_window(x, -jnp.inf, lax.max, window, window, "VALID")


@pytest.mark.parametrize(
    ("shape", "window"),
    [((2, 7, 6, 3), (1, 2, 2, 1)), ((2, 1, 5, 4, 3), (1, 1, 2, 2, 1)), ((3, 9, 2), (1, 3, 1))],
)
def test_values_and_batched_vjp_equal_reduce_window(shape, window):
    rng = np.random.default_rng(0)
    # Rounded values make ties common (zeros after a ReLU are the usual case).
    x = jnp.asarray(np.maximum(np.round(rng.normal(size=shape)), 0.0).astype(np.float32))
    out_shape = _reference(x, window).shape
    cts = jnp.asarray(rng.normal(size=(4, *out_shape)).astype(np.float32))
    np.testing.assert_array_equal(window_max(x, window), _reference(x, window))
    ours = jax.vmap(jax.vjp(lambda x: window_max(x, window), x)[1])(cts)[0]
    ref = jax.vmap(jax.vjp(lambda x: _reference(x, window), x)[1])(cts)[0]
    np.testing.assert_array_equal(ours, ref)
    t = jnp.asarray(rng.normal(size=shape).astype(np.float32))
    np.testing.assert_array_equal(
        jax.jvp(lambda x: window_max(x, window), (x,), (t,))[1],
        jax.jvp(lambda x: _reference(x, window), (x,), (t,))[1],
    )


def test_only_disjoint_windows_are_rewritten():
    base = {
        "window_dimensions": (1, 2, 2, 1),
        "window_strides": (1, 2, 2, 1),
        "padding": ((0, 0),) * 4,
        "base_dilation": (1,) * 4,
        "window_dilation": (1,) * 4,
    }
    assert is_disjoint_window_max("reduce_window_max", base)
    assert not is_disjoint_window_max("reduce_window_sum", base)
    assert not is_disjoint_window_max("reduce_window_max", {**base, "window_strides": (1,) * 4})
    padded = {**base, "padding": ((0, 0), (0, 1), (0, 1), (0, 0))}
    assert not is_disjoint_window_max("reduce_window_max", padded)
    dilated = {**base, "window_dilation": (1, 2, 2, 1)}
    assert not is_disjoint_window_max("reduce_window_max", dilated)
