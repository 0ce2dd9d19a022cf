"""Shared fixtures for the model-zoo tests.

XLA compiles every distinct random-initialiser shape separately, which makes real ``init`` of
deep models slow on a CPU. Most tests only need *some* well-scaled variables of the right
structure, so ``random_variables`` fills ``abstract_variables`` (shapes only) with NumPy random
numbers: no compilation at all. Initialisation itself is tested on small models.
"""

import math

import jax
import numpy as np
import pytest

from sdcomplex.models import abstract_variables


def _fill(path, leaf, rng):
    name = getattr(path[-1], "key", str(path[-1]))
    collection = getattr(path[0], "key", str(path[0]))
    shape = leaf.shape
    if collection == "batch_stats":
        if name == "var":
            return (1.0 + 0.5 * rng.random(shape)).astype(np.float32)
        return (0.1 * rng.standard_normal(shape)).astype(np.float32)
    if name == "kernel":
        fan_in = math.prod(shape[:-1])
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    if name == "scale":
        return (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
    return (0.1 * rng.standard_normal(shape)).astype(np.float32)  # biases


def make_random_variables(model, input_shape, seed=0):
    """Variables with the model's structure and He-scaled random values (float32 NumPy)."""
    rng = np.random.default_rng(seed)
    abstract = abstract_variables(model, input_shape)
    return jax.tree_util.tree_map_with_path(lambda p, leaf: _fill(p, leaf, rng), abstract)


@pytest.fixture(scope="session")
def random_variables():
    """The function ``(model, input_shape, seed=0) -> variables`` (see module docstring)."""
    return make_random_variables
