"""Float64 factorisation of kernel matrices: Cholesky with escalating jitter, eigh fallback."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import scipy.linalg

JITTER_SCHEDULE = (0.0, 1e-12, 1e-11, 1e-10, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4)
"""Jitters tried in turn, relative to the mean of the kernel's diagonal."""

SYMMETRY_RTOL = 1e-4
"""Largest ``max|K - K^T| / max|K|`` accepted as symmetric (float32 kernels are not exact)."""

EXACT_CONDITION_MAX_N = 2048
"""Up to this size the condition number is computed exactly from the eigenvalues."""


def check_finite(name: str, array: np.ndarray) -> None:
    """Raises ValueError if ``array`` holds NaN or inf."""
    if not np.all(np.isfinite(array)):
        bad = "NaN" if np.any(np.isnan(array)) else "inf"
        raise ValueError(f"{name} contains {bad} values")


def as_symmetric_matrix(name: str, kernel: Any) -> np.ndarray:
    """Float64 copy of a square, finite, symmetric matrix, exactly symmetrised.

    Raises:
      ValueError: not 2-d, not square, empty, not finite or not symmetric.
    """
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {k.shape}")
    if k.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    check_finite(name, k)
    scale = float(np.max(np.abs(k)))
    asym = float(np.max(np.abs(k - k.T)))
    if asym > SYMMETRY_RTOL * scale:
        raise ValueError(
            f"{name} is not symmetric: max |K - K^T| = {asym:.3g} "
            f"(relative {asym / scale:.3g} > {SYMMETRY_RTOL})"
        )
    return 0.5 * (k + k.T)


@dataclasses.dataclass(frozen=True)
class Factorization:
    """A factorised symmetric positive semi-definite matrix ``K + jitter * I``.

    Attributes:
      method: ``"cholesky"`` or ``"eigh"`` (pseudo-inverse on the numerically positive
        eigenvalues, used when Cholesky fails for every jitter of the schedule).
      jitter: absolute jitter added to the diagonal (0.0 when none was needed).
      condition_number: estimate of the condition number of the factorised matrix (exact from
        the eigenvalues up to ``EXACT_CONDITION_MAX_N``, else the Cholesky-diagonal bound
        ``(max L_ii / min L_ii)^2``, which is a lower bound).
      rank: numerical rank (n for Cholesky).
      cholesky: lower Cholesky factor, or None.
      eigenvalues, eigenvectors: kept eigenpairs for ``"eigh"``, or None.
    """

    method: str
    jitter: float
    condition_number: float
    rank: int
    cholesky: np.ndarray | None = None
    eigenvalues: np.ndarray | None = None
    eigenvectors: np.ndarray | None = None

    def quadratic_forms(self, y: np.ndarray) -> np.ndarray:
        """y[:, k]^T (K + jitter I)^{-1} y[:, k] for each column, float64, all >= 0.

        Args:
          y: (n, m) float64.

        Returns:
          (m,) float64.
        """
        if self.cholesky is not None:
            z = scipy.linalg.solve_triangular(self.cholesky, y, lower=True, check_finite=False)
            return np.sum(z * z, axis=0)
        assert self.eigenvalues is not None and self.eigenvectors is not None
        proj = self.eigenvectors.T @ y
        return np.sum(proj * proj / self.eigenvalues[:, None], axis=0)

    def solve(self, y: np.ndarray) -> np.ndarray:
        """(K + jitter I)^{-1} y (pseudo-inverse for ``"eigh"``), float64 (n, m)."""
        if self.cholesky is not None:
            return scipy.linalg.cho_solve((self.cholesky, True), y, check_finite=False)
        assert self.eigenvalues is not None and self.eigenvectors is not None
        return self.eigenvectors @ ((self.eigenvectors.T @ y) / self.eigenvalues[:, None])


def _exact_condition(matrix: np.ndarray) -> float:
    eig = np.linalg.eigvalsh(matrix)
    return float(eig[-1] / eig[0]) if eig[0] > 0 else float("inf")


def factorize(matrix: np.ndarray) -> Factorization:
    """Factorises a symmetric float64 matrix, adding the smallest jitter that makes it definite.

    A Cholesky factorisation is accepted only when its smallest pivot is not negligible
    (``min L_ii^2 > n * eps * max K_ii``); otherwise the next jitter of `JITTER_SCHEDULE` is
    tried. If every jitter fails, the pseudo-inverse over eigenvalues above
    ``n * eps * max eigenvalue`` is used.
    """
    n = matrix.shape[0]
    diag = np.diag(matrix)
    if np.any(diag < 0):
        raise ValueError("kernel has negative diagonal entries; it is not positive semi-definite")
    scale = float(np.mean(diag))
    if scale <= 0:
        raise ValueError("kernel has an all-zero diagonal; it is not a valid kernel")
    eps = np.finfo(np.float64).eps
    for relative in JITTER_SCHEDULE:
        jitter = relative * scale
        shifted = matrix + jitter * np.eye(n) if jitter else matrix
        try:
            chol = scipy.linalg.cholesky(shifted, lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            continue
        pivots = np.diag(chol)
        if not np.all(np.isfinite(chol)) or pivots.min() ** 2 <= n * eps * diag.max():
            continue
        if n <= EXACT_CONDITION_MAX_N:
            cond = _exact_condition(shifted)
        else:
            cond = float((pivots.max() / pivots.min()) ** 2)
        return Factorization("cholesky", float(jitter), cond, n, cholesky=chol)
    values, vectors = np.linalg.eigh(matrix)
    tol = n * eps * max(float(values[-1]), 0.0)
    keep = values > tol
    if not np.any(keep):
        raise ValueError("kernel has no positive eigenvalue")
    kept = values[keep]
    return Factorization(
        "eigh",
        0.0,
        float(kept[-1] / kept[0]),
        int(keep.sum()),
        eigenvalues=kept,
        eigenvectors=vectors[:, keep],
    )
