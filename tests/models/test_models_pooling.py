"""The reshape-based max pooling equals flax's reduce-window max pooling."""

import flax.linen as nn
import jax
import numpy as np
import pytest

from sdcomplex.models._common import max_pool


@pytest.mark.parametrize(
    ("shape", "spatial", "padding"),
    [
        ((3, 28, 28, 5), 2, "VALID"),
        ((2, 11, 9, 4), 2, "VALID"),
        ((2, 11, 9, 4), 2, "SAME"),
        ((4, 40, 3), 1, "SAME"),
        ((4, 41, 3), 1, "SAME"),
        ((4, 41, 3), 1, "VALID"),
    ],
)
def test_matches_flax_max_pool(shape, spatial, padding):
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    window = (2,) * spatial
    expected = nn.max_pool(x, window, strides=window, padding=padding)
    np.testing.assert_array_equal(max_pool(x, 2, spatial=spatial, padding=padding), expected)


def test_gradient_matches_flax_without_ties():
    x = np.random.default_rng(1).normal(size=(2, 10, 10, 3)).astype(np.float32)
    w = np.random.default_rng(2).normal(size=(2, 5, 5, 3)).astype(np.float32)

    def ours(v):
        return (max_pool(v, 2, spatial=2) * w).sum()

    def flax(v):
        return (nn.max_pool(v, (2, 2), strides=(2, 2)) * w).sum()

    np.testing.assert_allclose(jax.grad(ours)(x), jax.grad(flax)(x), rtol=1e-6)
