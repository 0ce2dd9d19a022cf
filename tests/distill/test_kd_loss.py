"""The KD loss against a float64 reference, its gradient identity and its errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sdcomplex.distill import kd_loss, kd_loss_per_example


def reference(zs, zt, y, tau, alpha):
    zs, zt = np.asarray(zs, np.float64), np.asarray(zt, np.float64)

    def log_softmax(z):
        z = z - z.max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))

    ls, lt = log_softmax(zs / tau), log_softmax(zt / tau)
    pt = np.exp(lt)
    kl = np.sum(np.where(pt > 0, pt * (lt - ls), 0.0), axis=1)
    ce = -log_softmax(zs)[np.arange(len(y)), y]
    return (1 - alpha) * tau**2 * kl + alpha * ce


@pytest.mark.parametrize("tau", [0.5, 1.0, 4.0])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_matches_float64_reference(tau, alpha):
    r = np.random.default_rng(0)
    zs, zt = r.normal(size=(2, 16, 10)) * 3
    y = r.integers(0, 10, size=16)
    args = (jnp.asarray(zs, jnp.float32), jnp.asarray(zt, jnp.float32), jnp.asarray(y))
    want = reference(zs, zt, y, tau, alpha)
    got = kd_loss_per_example(*args, temperature=tau, alpha=alpha)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
    mean = kd_loss(*args, temperature=tau, alpha=alpha)
    assert float(mean) == pytest.approx(want.mean(), rel=2e-5, abs=2e-5)


def test_extreme_logits_are_finite_and_correct():
    zs = jnp.array([[1e4, -1e4, 0.0], [-3e3, 2e3, 5.0]], jnp.float32)
    zt = jnp.array([[-1e4, 1e4, 0.0], [-3e3, 2e3, 5.0]], jnp.float32)
    y = jnp.array([0, 1])
    for tau in (1.0, 4.0):
        got = kd_loss_per_example(zs, zt, y, temperature=tau, alpha=0.5)
        assert np.all(np.isfinite(got))
        np.testing.assert_allclose(got, reference(zs, zt, np.asarray(y), tau, 0.5), rtol=1e-5)
        grad = jax.grad(lambda z, t=tau: kd_loss(z, zt, y, temperature=t, alpha=0.5))(zs)
        assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("tau", [1.0, 2.5, 8.0])
def test_gradient_is_tau_times_probability_difference(tau):
    r = np.random.default_rng(1)
    zs, zt = (jnp.asarray(a, jnp.float32) for a in r.normal(size=(2, 5, 7)))
    grad = jax.grad(lambda z: kd_loss_per_example(z, zt, temperature=tau).sum())(zs)
    expected = tau * (jax.nn.softmax(zs / tau) - jax.nn.softmax(zt / tau))
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)
    # No gradient flows into the teacher.
    assert np.all(jax.grad(lambda z: kd_loss(zs, z, temperature=tau))(zt) == 0)


def test_identical_predictions_give_zero():
    z = jnp.asarray(np.random.default_rng(2).normal(size=(4, 3)), jnp.float32)
    np.testing.assert_allclose(kd_loss_per_example(z, z, temperature=3.0), 0.0, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"temperature": 0.0}, ValueError, "temperature"),
        ({"temperature": -1.0}, ValueError, "temperature"),
        ({"temperature": float("inf")}, ValueError, "temperature"),
        ({"alpha": 1.5}, ValueError, "alpha"),
        ({"alpha": -0.1}, ValueError, "alpha"),
        ({"temperature": "4"}, TypeError, "temperature"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    z = jnp.zeros((2, 3))
    with pytest.raises(error, match=match):
        kd_loss(z, z, jnp.array([0, 1]), **kwargs)


def test_numpy_scalar_arguments_give_the_python_float_loss():
    rng = np.random.default_rng(3)
    zs, zt = (jnp.asarray(rng.normal(size=(4, 3)), jnp.float32) for _ in range(2))
    y = jnp.array([0, 1, 2, 1])
    want = kd_loss(zs, zt, y, temperature=4.0, alpha=0.25)
    got = kd_loss(zs, zt, y, temperature=np.float32(4.0), alpha=np.float64(0.25))
    assert float(got) == float(want)


def test_shape_and_label_errors():
    with pytest.raises(ValueError, match="batch, C"):
        kd_loss(jnp.zeros((2, 3)), jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match="labels are required"):
        kd_loss(jnp.zeros((2, 3)), jnp.zeros((2, 3)), alpha=0.5)


@pytest.mark.parametrize(
    ("labels", "error", "match"),
    [
        (jnp.array([0.9, 1.9]), TypeError, "integer"),  # was truncated to [0, 1]
        (jnp.array([True, False]), TypeError, "integer"),
        (jnp.array([[0], [1]]), ValueError, r"shape \(2,\)"),
        (jnp.array([[1, 0, 0], [0, 1, 0]]), ValueError, r"shape \(2,\)"),  # one-hot
        (jnp.array([0]), ValueError, r"shape \(2,\)"),
    ],
)
def test_labels_must_be_integer_indices_of_the_batch(labels, error, match):
    z = jnp.zeros((2, 3))
    with pytest.raises(error, match=match):
        kd_loss(z, z, labels, alpha=0.5)
