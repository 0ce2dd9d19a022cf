"""Targets: values against independent computations, provenance, errors."""

import decimal
import json

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


def test_centred_logits_near_the_float64_limit():
    # Closed forms: the row mean of [a, a, -a] is a / 3 (it overflowed to inf, every value -inf).
    a = 1e308
    got = tg.logit_targets(np.array([[a, a, -a], [1.0, 2.0, 6.0]]), center=True).values
    np.testing.assert_allclose(got, [[a / 3 * 2, a / 3 * 2, a / 3 * -4], [-2.0, -1.0, 3.0]])
    with pytest.raises(ValueError, match="centred targets contains inf"):
        tg.logit_targets(np.array([[1.7e308, -1.7e308, -1.7e308]]), center=True)


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


def logsumexp_softmax(z, tau):
    """float64 reference: exp(z / tau - logsumexp(z / tau)) per row."""
    from scipy.special import logsumexp

    s = np.asarray(z, np.float64) / tau
    return np.exp(s - logsumexp(s, axis=1, keepdims=True))


@pytest.mark.parametrize("tau", [1e-3, 0.05, 1.0, 7.0, 1e6])
@pytest.mark.parametrize("scale", [1.0, 1e3, 1e30])
def test_soft_targets_match_a_logsumexp_reference(tau, scale):
    z = np.random.default_rng(1).normal(size=(6, 5)) * scale
    reference = logsumexp_softmax(z, tau)
    assert np.all(np.isfinite(reference))  # the reference itself is finite in this range
    np.testing.assert_allclose(tg.soft_targets(z, tau).values, reference, rtol=1e-12, atol=1e-300)


def decimal_softmax(z, tau):
    """Reference in 60-digit decimal arithmetic with an unbounded exponent range (no overflow)."""
    out = []
    with decimal.localcontext() as ctx:
        ctx.prec, ctx.Emax, ctx.Emin = 60, 10**15, -(10**15)
        for row in z:
            top = max(row)
            e = [
                ((decimal.Decimal(v) - decimal.Decimal(top)) / decimal.Decimal(tau)).exp()
                for v in row
            ]
            total = sum(e)
            out.append([float(v / total) for v in e])
    return np.array(out)


@pytest.mark.parametrize("tau", [5e-324, 1e-300, 1e-30, 1e-8, 1.0, 1e30, 1e300, 1.7e308])
@pytest.mark.parametrize(
    "z",
    [
        [[1.7e308, -1.7e308, 0.0], [-1.7e308, -1.7e308, -1.7e308]],
        [[1e300, 1e300, -3.0], [5e-324, 0.0, -5e-324]],
        [[0.0, 0.0, 0.0], [3.0, 2.0, 1.0]],
    ],
)
def test_soft_targets_never_nan_at_any_finite_temperature(tau, z):
    p = tg.soft_targets(np.array(z), tau).values
    assert np.all(np.isfinite(p)) and np.all(p >= 0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(p, decimal_softmax(z, tau), rtol=1e-13, atol=1e-300)


def test_soft_targets_random_extremes_match_the_decimal_reference():
    rng = np.random.default_rng(7)
    for _ in range(40):
        scale = 10.0 ** rng.uniform(-320, 307)
        tau = 10.0 ** rng.uniform(-320, 307)
        z = rng.normal(size=(3, 4)) * scale
        p = tg.soft_targets(z, tau).values
        assert np.all(np.isfinite(p))
        np.testing.assert_allclose(p, decimal_softmax(z, tau), rtol=1e-12, atol=1e-300)


def test_soft_targets_at_the_largest_temperature_keep_the_ratios():
    # tau = 1e308, logits +-1.5e308: z - max overflows, z / tau does not; exponents (0, -3, -1.5).
    p = tg.soft_targets(np.array([[1.5e308, -1.5e308, 0.0]]), 1e308).values
    e = np.exp([0.0, -3.0, -1.5])
    np.testing.assert_allclose(p[0], e / e.sum(), rtol=1e-12)


def test_soft_targets_of_float32_and_float16_logits_are_float64():
    z = np.array([[60000.0, -60000.0, 1.0]], dtype=np.float16)
    p = tg.soft_targets(z, np.float16(0.001)).values
    assert p.dtype == np.float64 and np.all(np.isfinite(p))
    z32 = np.random.default_rng(2).normal(size=(4, 3)).astype(np.float32) * 50
    np.testing.assert_allclose(
        tg.soft_targets(z32, 0.5).values, logsumexp_softmax(z32, 0.5), rtol=1e-12
    )


@pytest.mark.parametrize(
    ("tau", "classes", "n", "seed"),
    [
        (np.float32(4.0), np.int64(3), np.int64(20), np.int64(3)),
        (np.float64(4.0), np.int32(3), np.int32(20), np.uint8(3)),
        (np.int64(4), np.int16(3), np.int8(20), np.array(3)),
        (np.array(4.0, np.float32), np.array(3), np.array(20), 3),
    ],
)
def test_numpy_scalars_are_accepted_as_numbers(tau, classes, n, seed):
    z = np.random.default_rng(3).normal(size=(5, 3))
    t = tg.soft_targets(z, tau)
    np.testing.assert_allclose(t.values, tg.soft_targets(z, 4.0).values)
    assert type(t.describe()["temperature"]) is float
    one = tg.one_hot(np.array([0, 2, 1], np.uint8), classes, center=np.bool_(True))
    assert one.describe()["num_classes"] == 3 and type(one.describe()["num_classes"]) is int
    assert type(one.describe()["centered"]) is bool
    r = tg.random_labels(n, classes, seed=seed)
    np.testing.assert_array_equal(r.values, tg.random_labels(20, 3, seed=3).values)
    assert type(r.describe()["seed"]) is int
    b = tg.binary_targets(np.array([0, 5, 7]), positive_classes=np.array([5, 7], np.int64))
    assert b.describe()["positive_classes"] == [5, 7]
    json.dumps([t.describe(), one.describe(), r.describe(), b.describe()])


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: tg.soft_targets(np.ones((2, 2)) * (1 + 1j), 1.0),
            TypeError,
            "logits must be real",
        ),
        (lambda: tg.logit_targets(np.ones((2, 2)) + 0j), TypeError, "logits must be real"),
        (lambda: tg.one_hot(np.array([0, 1]) + 0j, 2), TypeError, "labels must be real"),
        (lambda: tg.binary_targets(np.array([0, 1]) + 0j), TypeError, "labels must be real"),
        (lambda: tg.soft_targets(np.zeros((0, 3)), 1.0), ValueError, "logits"),
        (lambda: tg.soft_targets(np.zeros((3, 0)), 1.0), ValueError, "logits"),
        (lambda: tg.one_hot([], 3), ValueError, "empty"),
        (lambda: tg.binary_targets([]), ValueError, "non-empty"),
        # An empty class list made every target -1 (a constant task, never a binary one).
        (lambda: tg.binary_targets([0, 1], positive_classes=[]), ValueError, "at least one"),
        (lambda: tg.soft_targets(np.array([[np.inf, 1]]), 1.0), ValueError, "logits contains inf"),
        (lambda: tg.one_hot([0.0, np.nan], 3), ValueError, "labels contains NaN"),
        (lambda: tg.soft_targets(np.ones((2, 2)), np.inf), ValueError, "temperature"),
        (lambda: tg.soft_targets(np.ones((2, 2)), np.nan), ValueError, "temperature"),
        (lambda: tg.soft_targets(np.ones((2, 2)), "4"), TypeError, "temperature"),
        (lambda: tg.soft_targets(np.ones((2, 2)), True), TypeError, "temperature"),
        (lambda: tg.soft_targets(np.ones((2, 2)), 2j), TypeError, "temperature"),
        (lambda: tg.one_hot([0], 3.0), TypeError, "num_classes"),
        (lambda: tg.one_hot([0], np.float32(3.0)), TypeError, "num_classes"),
        (lambda: tg.random_labels(3.0, 3, seed=0), TypeError, "n must be an integer"),
        (lambda: tg.random_labels(3, 3, seed=0.5), TypeError, "seed"),
        (lambda: tg.random_labels(3, 3, seed=-1), ValueError, "seed"),
    ],
)
def test_more_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
