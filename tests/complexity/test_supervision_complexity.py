"""supervision_complexity against closed forms and independent computations."""

import numpy as np
import pytest

from sdcomplex.complexity import factorize_kernel, supervision_complexity
from sdcomplex.targets import one_hot


def random_kernel(n, seed=0, rank=None):
    r = np.random.default_rng(seed)
    a = r.normal(size=(n, rank or 2 * n))
    return a @ a.T / a.shape[1]


def test_identity_kernel_gives_squared_norm():
    y = np.random.default_rng(1).normal(size=(6, 3))
    r = supervision_complexity(np.eye(6), y)
    assert r.value == pytest.approx(np.sum(y**2), rel=1e-12)
    assert r.adjusted == pytest.approx(np.sqrt(np.sum(y**2) * 6) / 6, rel=1e-12)
    assert (r.trace, r.n, r.num_outputs, r.outputs, r.jitter, r.method) == (
        6.0,
        6,
        3,
        "mean",
        0.0,
        "cholesky",
    )


def test_equals_rkhs_norm_computed_another_way():
    k, y = random_kernel(8), np.random.default_rng(2).normal(size=(8, 2))
    alpha = np.linalg.solve(k, y)
    rkhs = np.trace(alpha.T @ k @ alpha)
    assert supervision_complexity(k, y).value == pytest.approx(rkhs, rel=1e-9)


def test_permutation_invariance():
    k, y = random_kernel(9, seed=3), np.random.default_rng(4).normal(size=(9, 3))
    perm = np.random.default_rng(5).permutation(9)
    a = supervision_complexity(k, y).value
    b = supervision_complexity(k[np.ix_(perm, perm)], y[perm]).value
    assert a == pytest.approx(b, rel=1e-10)


def test_scaling_kernel_keeps_adjusted_value():
    k, y = random_kernel(7, seed=6), np.random.default_rng(7).normal(size=7)
    base = supervision_complexity(k, y)
    scaled = supervision_complexity(123.0 * k, y)
    assert scaled.value == pytest.approx(base.value / 123.0, rel=1e-10)
    assert scaled.adjusted == pytest.approx(base.adjusted, rel=1e-10)


def test_float32_kernel_is_solved_in_float64():
    k = random_kernel(30, seed=8)
    y = np.random.default_rng(9).normal(size=30)
    k32 = k.astype(np.float32)
    reference = y @ np.linalg.solve(k32.astype(np.float64), y)
    assert supervision_complexity(k32, y).value == pytest.approx(reference, rel=1e-8)


def test_exact_zero_eigenvalue_is_finite_with_jitter_reported():
    k = random_kernel(6, seed=10, rank=4)  # rank 4: two exact zero eigenvalues
    y = np.random.default_rng(11).normal(size=6)
    r = supervision_complexity(k, y)
    assert np.isfinite(r.value) and r.value > 0
    assert r.jitter > 0 or r.method == "eigh"
    # y in the kernel's range: the pseudo-inverse value is the interpolant's norm.
    y_range = k @ np.random.default_rng(12).normal(size=6)
    r2 = supervision_complexity(k, y_range)
    assert np.isfinite(r2.value) and r2.value >= 0


@pytest.mark.parametrize("seed", [10, 14, 37])
def test_numerically_singular_kernel_gets_jitter_even_when_cholesky_passes(seed):
    # Rank-3 Gram matrices of order 4 whose float64 Cholesky factor exists with pivots above
    # the floor, though the smallest eigenvalue is round-off (+-1e-15 of 10): they were solved
    # without jitter (condition number inf or 1e16, a value set by round-off, rank 4 reported).
    a = np.random.default_rng(seed).normal(size=(4, 3))
    k = a @ a.T
    values = np.linalg.eigvalsh(k)
    assert abs(values[0]) <= 4 * np.finfo(np.float64).eps * np.max(np.diag(k))
    y = np.random.default_rng(seed + 1).normal(size=4)
    r = supervision_complexity(k, y)
    assert r.jitter > 0 and r.method == "cholesky"
    shifted = k + r.jitter * np.eye(4)
    # Float64 references for the matrix actually solved, K + jitter I (condition number about
    # 3e12: both solves carry relative errors up to cond * eps, about 1e-3).
    assert r.value == pytest.approx(y @ np.linalg.solve(shifted, y), rel=1e-2)
    want_cond = (values[-1] + r.jitter) / (values[0] + r.jitter)
    assert r.condition_number == pytest.approx(want_cond, rel=1e-3)
    # Targets in the kernel's range keep the pseudo-inverse value of the interpolant.
    y_range = k @ y
    want = y_range @ np.linalg.pinv(k, rcond=1e-12, hermitian=True) @ y_range
    assert supervision_complexity(k, y_range).value == pytest.approx(want, rel=1e-6)


def test_all_zero_eigen_directions_never_nan_or_negative():
    k = np.ones((4, 4))  # rank one
    for y in (np.ones(4), np.array([1.0, -1.0, 0.5, 0.0])):
        r = supervision_complexity(k, y)
        assert np.isfinite(r.value) and r.value >= 0


def test_forms_agree_on_kronecker_kernel():
    k, c = random_kernel(5, seed=13), 3
    y = np.random.default_rng(14).normal(size=(5, c))
    mean = supervision_complexity(k, y)
    full = supervision_complexity(k[:, :, None, None] * np.eye(c), y)
    diag = supervision_complexity(np.broadcast_to(k, (c, 5, 5)), y)
    assert full.value == pytest.approx(mean.value, rel=1e-9)
    assert diag.value == pytest.approx(mean.value, rel=1e-9)
    assert (full.outputs, diag.outputs) == ("full", "diag")
    assert full.trace == pytest.approx(c * np.trace(k))


def test_full_kernel_uses_example_major_flattening():
    r = np.random.default_rng(15)
    a = r.normal(size=(8, 20))
    flat = a @ a.T / 20  # (n*C, n*C) with n = 4, C = 2
    full = flat.reshape(4, 2, 4, 2).transpose(0, 2, 1, 3)
    y = r.normal(size=(4, 2))
    expected = y.reshape(-1) @ np.linalg.solve(flat, y.reshape(-1))
    assert supervision_complexity(full, y).value == pytest.approx(expected, rel=1e-9)


def test_ridge_matches_eigendecomposition():
    k, y, lam = random_kernel(6, seed=16), np.random.default_rng(17).normal(size=6), 0.05
    values, vectors = np.linalg.eigh(k)
    expected = np.sum((vectors.T @ y) ** 2 / (values + lam * 6))
    r = supervision_complexity(k, y, ridge=lam)
    assert r.value == pytest.approx(expected, rel=1e-9)
    assert r.ridge == lam and r.trace == pytest.approx(np.trace(k))


def test_offset_gives_residual_targets():
    k = random_kernel(5, seed=18)
    y, f0 = np.random.default_rng(19).normal(size=(2, 5, 3))
    r = supervision_complexity(k, y, offset=f0)
    assert r.residual
    assert r.value == pytest.approx(supervision_complexity(k, y - f0).value, rel=1e-12)


def test_factorized_kernel_reuses_factorisation_and_records_targets():
    k = random_kernel(5, seed=20)
    fk = factorize_kernel(k)
    t = one_hot([0, 1, 2, 0, 1], 3)
    r = fk.complexity(t)
    assert r.targets["kind"] == "one_hot"
    assert r.value == pytest.approx(supervision_complexity(k, t.values).value)


def test_condition_number_reported():
    k = np.diag([1.0, 10.0, 100.0])
    assert supervision_complexity(k, np.ones(3)).condition_number == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("kernel", "targets", "kwargs", "error", "match"),
    [
        (np.ones((3, 4)), np.ones(3), {}, ValueError, "square"),
        (np.array([[1.0, 0.5], [0.0, 1.0]]), np.ones(2), {}, ValueError, "not symmetric"),
        (np.array([[1.0, np.nan], [np.nan, 1.0]]), np.ones(2), {}, ValueError, "NaN"),
        (np.array([[np.inf, 0], [0, 1.0]]), np.ones(2), {}, ValueError, "inf"),
        (np.eye(2), np.array([1.0, np.nan]), {}, ValueError, "targets contains NaN"),
        (np.eye(3), np.ones(2), {}, ValueError, "rows"),
        (np.eye(3), np.ones(3), {"ridge": -1.0}, ValueError, "ridge"),
        (np.ones((2, 2, 2, 2, 2)), np.ones(2), {}, ValueError, "kernel must have shape"),
        (
            np.eye(3)[:, :, None, None] * np.ones((1, 1, 2, 2)),
            np.ones((3, 3)),
            {},
            ValueError,
            "columns",
        ),
        (np.eye(3), np.ones(3), {"offset": np.ones(2)}, ValueError, "offset"),
        (np.array([["a"]]), np.ones(1), {}, TypeError, "numeric"),
        (-np.eye(2), np.ones(2), {}, ValueError, "negative diagonal"),
    ],
)
def test_bad_input(kernel, targets, kwargs, error, match):
    with pytest.raises(error, match=match):
        supervision_complexity(kernel, targets, **kwargs)
