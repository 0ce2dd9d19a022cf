"""The PSD rule: kernels negative beyond round-off are errors; projection only when asked."""

import math
import re

import numpy as np
import pytest

from sdcomplex.complexity import (
    PSD_TOLERANCE_FACTOR,
    _solve,
    factorize_kernel,
    margin_bound,
    supervision_complexity,
)


def spectral_kernel(rng, eigenvalues):
    """Q diag(eigenvalues) Q^T with a random orthogonal Q (float64)."""
    q, _ = np.linalg.qr(rng.normal(size=(len(eigenvalues), len(eigenvalues))))
    return (q * np.asarray(eigenvalues)) @ q.T


def numpy_projection(k):
    values, vectors = np.linalg.eigh(k)
    return (vectors * np.maximum(values, 0.0)) @ vectors.T, values


def ratio_in(err):
    """The lambda_min / lambda_max ratio the error message names."""
    return float(re.search(r"is (-?[0-9.e+-]+) times the largest", str(err)).group(1))


def test_two_by_two_indefinite_raises_naming_the_ratio():
    with pytest.raises(ValueError, match="not positive semi-definite") as info:
        supervision_complexity([[1, 2], [2, 1]], [1, -1])
    assert ratio_in(info.value) == pytest.approx(-1 / 3, rel=1e-5)
    assert "psd='project'" in str(info.value)


def test_twenty_by_twenty_with_five_negative_eigenvalues_raises():
    rng = np.random.default_rng(0)
    values = np.concatenate([np.linspace(1.0, 0.1, 15), np.full(5, -0.05)])
    k = spectral_kernel(rng, values)
    y = rng.normal(size=(20, 3))
    with pytest.raises(ValueError, match="not positive semi-definite") as info:
        supervision_complexity(k, y)
    assert ratio_in(info.value) == pytest.approx(-0.05, rel=1e-4)
    for form_kernel in (np.broadcast_to(k, (3, 20, 20)), k[:, :, None, None] * np.eye(3)):
        with pytest.raises(ValueError, match="not positive semi-definite"):
            supervision_complexity(form_kernel, y)  # diag and full forms too
    with pytest.raises(ValueError, match="not positive semi-definite"):
        supervision_complexity(k, y, ridge=1.0)  # a ridge does not excuse the kernel


def test_diag_form_names_the_bad_logit():
    rng = np.random.default_rng(1)
    good = spectral_kernel(rng, np.linspace(2.0, 0.5, 6))
    bad = spectral_kernel(rng, [1.0, 0.5, 0.4, 0.3, 0.2, -0.2])
    with pytest.raises(ValueError, match=r"kernel \(logit 1\) is not positive"):
        supervision_complexity(np.stack([good, bad]), rng.normal(size=(6, 2)))


@pytest.mark.parametrize("cholesky_succeeds_with_jitter", [True, False])
def test_jitter_never_hides_an_indefinite_kernel(cholesky_succeeds_with_jitter):
    # lambda_min = -1e-6 lambda_max: far beyond float64 round-off, yet small enough that the
    # jitter schedule (up to 1e-4 * mean diag) makes Cholesky succeed.
    rng = np.random.default_rng(2)
    low = -1e-6 if cholesky_succeeds_with_jitter else -1e-3
    k = spectral_kernel(rng, np.concatenate([np.linspace(1.0, 0.5, 9), [low]]))
    with pytest.raises(ValueError) as info:
        supervision_complexity(k, rng.normal(size=10))
    assert ratio_in(info.value) == pytest.approx(low, rel=1e-4)


def test_above_exact_size_the_cholesky_certificate_or_spectrum_decides(monkeypatch):
    monkeypatch.setattr(_solve, "EXACT_CONDITION_MAX_N", 4)
    rng = np.random.default_rng(3)
    pd = spectral_kernel(rng, np.linspace(1.0, 0.1, 12))
    y = rng.normal(size=12)
    r = supervision_complexity(pd, y)
    assert r.value == pytest.approx(y @ np.linalg.solve(pd, y), rel=1e-9)
    bad = spectral_kernel(rng, np.concatenate([np.linspace(1.0, 0.1, 11), [-1e-6]]))
    with pytest.raises(ValueError, match="not positive semi-definite"):
        supervision_complexity(bad, y)


def test_round_off_negative_eigenvalues_pass():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(40, 10))
    k = a @ a.T  # rank 10: 30 eigenvalues at zero, computed as +-1e-15 relative
    values = np.linalg.eigvalsh(k)
    assert values[0] < 0  # the round-off this test is about is really there
    y = k @ rng.normal(size=40)  # in the range: a finite interpolant exists
    r = supervision_complexity(k, y)
    assert np.isfinite(r.value) and r.value >= 0


def test_float32_round_off_passes_within_the_float32_tolerance():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(60, 8)).astype(np.float32)
    k32 = a @ a.T  # float32 Gram of rank 8: negative eigenvalues at float32 round-off
    values = np.linalg.eigvalsh(k32.astype(np.float64))
    eps32 = float(np.finfo(np.float32).eps)
    assert values[0] / values[-1] < -60 * np.finfo(np.float64).eps * PSD_TOLERANCE_FACTOR
    assert values[0] / values[-1] > -60 * eps32 * PSD_TOLERANCE_FACTOR
    r = supervision_complexity(k32, k32.astype(np.float64) @ rng.normal(size=60))
    assert np.isfinite(r.value)
    # The same numbers claimed to be float64 are beyond float64 round-off: an error.
    with pytest.raises(ValueError, match="not positive semi-definite"):
        supervision_complexity(k32.astype(np.float64), np.ones(60))


def test_near_singular_psd_kernels_still_work():
    rng = np.random.default_rng(6)
    k = spectral_kernel(rng, np.geomspace(1.0, 1e-13, 12))  # condition number 1e13, PSD
    y = rng.normal(size=12)
    r = supervision_complexity(k, y)
    assert np.isfinite(r.value) and r.value > 0 and r.psd_removed == 0.0
    k_tiny = 1e-30 * spectral_kernel(rng, np.linspace(1.0, 0.2, 5))  # tiny scale is fine
    r = supervision_complexity(k_tiny, np.ones(5))
    assert r.value == pytest.approx(np.ones(5) @ np.linalg.solve(k_tiny, np.ones(5)), rel=1e-8)


def test_projection_equals_the_complexity_of_the_numpy_projected_kernel():
    rng = np.random.default_rng(7)
    values = np.concatenate([np.linspace(1.0, 0.1, 15), np.full(5, -0.05)])
    k = spectral_kernel(rng, values)
    k_plus, eig = numpy_projection(k)
    y = k_plus @ rng.normal(size=(20, 2))  # in the projection's range
    r = supervision_complexity(k, y, psd="project")
    reference = supervision_complexity(k_plus, y)
    assert r.value == pytest.approx(reference.value, rel=1e-8)
    assert r.trace == pytest.approx(np.trace(k_plus), rel=1e-12)
    # Independent closed form: pseudo-inverse of K_+ on its range.
    pinv_value = np.trace(y.T @ np.linalg.pinv(k_plus, rcond=1e-10, hermitian=True) @ y)
    assert r.value == pytest.approx(pinv_value, rel=1e-6)
    removed = np.sqrt(np.sum(eig[eig < 0] ** 2) / np.sum(eig**2))
    assert (r.psd, r.psd_removed) == ("project", pytest.approx(removed, rel=1e-10))
    assert r.to_dict()["psd_removed"] == r.psd_removed


def test_projection_of_the_two_by_two_and_of_a_psd_kernel():
    r = supervision_complexity([[1, 2], [2, 1]], [1, 1], psd="project")
    # K_+ = 1.5 [[1, 1], [1, 1]]; y = (1, 1) = K_+ (1/3, 1/3): s = a^T K_+ a = 2/3.
    assert r.value == pytest.approx(2 / 3, rel=1e-6)
    assert r.psd_removed == pytest.approx(1 / math.sqrt(10), rel=1e-12)
    k = np.diag([3.0, 1.0])
    plain = supervision_complexity(k, [1, 1])
    projected = supervision_complexity(k, [1, 1], psd="project")
    assert projected.value == pytest.approx(plain.value, rel=1e-12)
    assert (plain.psd, projected.psd, projected.psd_removed) == ("error", "project", 0.0)


def test_factorized_kernel_and_margin_bound_follow_the_rule():
    with pytest.raises(ValueError, match="not positive semi-definite"):
        factorize_kernel(np.array([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match="psd must be one of"):
        factorize_kernel(np.eye(2), psd="clip")
    k = np.array([[1.0, 2.0], [2.0, 1.0]])
    y = np.array([1.0, 1.0])
    with pytest.raises(ValueError, match=r"-0\.333333 times the largest"):
        margin_bound(k, y, y, y, gamma=1.0)
    b = margin_bound(k, y, y, y, gamma=1.0, psd="project")
    assert b.supervision_complexity == pytest.approx(2 / 3, rel=1e-6)
    assert b.psd == "project" and b.psd_removed > 0


@pytest.mark.parametrize(
    ("kernel", "message"),
    [
        (-np.eye(2), "negative diagonal"),
        (np.zeros((3, 3)), "all-zero diagonal"),
        (np.array([[0.0, 1.0], [1.0, 0.0]]), "all-zero diagonal"),
        (np.diag([1.0, -0.5]), r"-0\.5 times the largest.*negative diagonal entries"),
    ],
)
def test_kernels_that_are_not_kernels(kernel, message):
    with pytest.raises(ValueError, match=message):
        supervision_complexity(kernel, np.ones(kernel.shape[0]))
