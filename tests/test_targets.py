"""Targets: values against independent computations, provenance, errors."""

import numpy as np
import pytest
from scipy.special import softmax

from sdcomplex import targets as tg


def test_one_hot_and_centering():
    t = tg.one_hot([2, 0, 1], 3)
    np.testing.assert_array_equal(t.values, np.eye(3)[[2, 0, 1]])
    np.testing.assert_array_equal(t.labels, [2, 0, 1])
    c = tg.one_hot([2, 0, 1], 3, center=True)
    np.testing.assert_allclose(c.values.sum(1), 0, atol=1e-15)
    assert c.describe() == {"kind": "one_hot", "num_classes": 3, "centered": True, "shape": [3, 3]}


def test_soft_targets_match_scipy_and_limits():
    z = np.random.default_rng(0).normal(size=(5, 4)) * 10
    for tau in (0.1, 1.0, 4.0):
        np.testing.assert_allclose(tg.soft_targets(z, tau).values, softmax(z / tau, axis=1))
    np.testing.assert_allclose(tg.soft_targets(z, 1e9).values, 0.25, atol=1e-8)
    extreme = tg.soft_targets(np.array([[1000.0, -1000.0]]), 1.0).values
    np.testing.assert_allclose(extreme, [[1.0, 0.0]])
    assert tg.soft_targets(z, 2.0).describe()["temperature"] == 2.0


def test_binary_targets():
    np.testing.assert_array_equal(tg.binary_targets([0, 1, 1]).values[:, 0], [-1, 1, 1])
    t = tg.binary_targets([0, 5, 7, 2], positive_classes=[5, 7])
    np.testing.assert_array_equal(t.values[:, 0], [-1, 1, 1, -1])
    np.testing.assert_array_equal(t.labels, [0, 1, 1, 0])
    with pytest.raises(ValueError, match="positive_classes"):
        tg.binary_targets([0, 1, 2])


def test_random_labels_are_seeded():
    a = tg.random_labels(50, 10, seed=3)
    b = tg.random_labels(50, 10, seed=3)
    c = tg.random_labels(50, 10, seed=4)
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.array_equal(a.values, c.values)
    assert a.describe()["seed"] == 3 and a.values.sum() == 50


def test_logit_targets():
    z = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(tg.logit_targets(z, center=True).values, [[-1.0, 0.0, 1.0]])


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: tg.one_hot([0, 3], 3), ValueError, "out of range"),
        (lambda: tg.one_hot([0, -1], 3), ValueError, ">= 0"),
        (lambda: tg.one_hot([0.5], 3), TypeError, "integers"),
        (lambda: tg.one_hot([[0]], 3), ValueError, r"\(n,\)"),
        (lambda: tg.one_hot([0], 0), ValueError, "num_classes"),
        (lambda: tg.soft_targets(np.ones((2, 2)), 0.0), ValueError, "temperature"),
        (lambda: tg.soft_targets(np.ones((2, 2)), -1), ValueError, "temperature"),
        (lambda: tg.soft_targets(np.ones(2), 1.0), ValueError, "logits"),
        (lambda: tg.soft_targets(np.array([[np.nan, 1]]), 1.0), ValueError, "NaN"),
        (lambda: tg.random_labels(0, 3, seed=0), ValueError, "n must"),
    ],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
