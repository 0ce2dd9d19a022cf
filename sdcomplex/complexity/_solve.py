"""Float64 factorisation of kernel matrices: Cholesky with escalating jitter, eigh fallback."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import scipy.linalg

from sdcomplex._checks import as_real_array, check_real_dtype
from sdcomplex.complexity._psd import check_eigenvalues

JITTER_SCHEDULE = (0.0, 1e-12, 1e-11, 1e-10, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4)
"""Jitters tried in turn, relative to the mean of the kernel's diagonal."""

SYMMETRY_RTOL = 1e-4
"""Largest ``max|K - K^T| / max|K|`` accepted as symmetric (float32 kernels are not exact)."""

EXACT_CONDITION_MAX_N = 2048
"""Up to this size the eigenvalues are computed (PSD check, exact condition number)."""

_EPS64 = float(np.finfo(np.float64).eps)


def as_symmetric_matrix(name: str, kernel: Any) -> np.ndarray:
    """Float64 copy of a square, real, finite, symmetric matrix, exactly symmetrised.

    Raises:
      TypeError: complex or non-numeric values.
      ValueError: not 2-d, not square, empty, not finite or not symmetric.
    """
    k = np.asarray(kernel)
    check_real_dtype(name, k.dtype)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {k.shape}")
    k = as_real_array(name, k)
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


def _negligible(matrix: np.ndarray) -> float:
    """``n * eps * max K_ii`` (float64 eps): a pivot or eigenvalue at most this is round-off."""
    return matrix.shape[0] * _EPS64 * float(np.max(np.diag(matrix)))


def _cholesky(matrix: np.ndarray) -> np.ndarray | None:
    """Lower Cholesky factor, or None when it fails or its smallest pivot is negligible
    (``min L_ii^2 <= n * eps * max K_ii``, float64 eps)."""
    try:
        chol = scipy.linalg.cholesky(matrix, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        return None
    pivots = np.diag(chol)
    if not np.all(np.isfinite(chol)) or pivots.min() ** 2 <= _negligible(matrix):
        return None
    return chol


def _checked_spectrum(
    name: str, matrix: np.ndarray, eps: float
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Applies the PSD rule of `sdcomplex.complexity._psd` to ``matrix`` (before any shift).

    Returns (ascending eigenvalues or None, jitter-free Cholesky factor or None). Up to
    ``EXACT_CONDITION_MAX_N`` the eigenvalues are computed; above, a Cholesky factorisation
    without jitter certifies positive definiteness and the eigenvalues are computed only when it
    fails. A jitter that makes Cholesky succeed therefore never hides an indefinite kernel.
    """
    chol = None
    if matrix.shape[0] > EXACT_CONDITION_MAX_N:
        chol = _cholesky(matrix)
        if chol is not None:
            return None, chol
    values = np.linalg.eigvalsh(matrix)
    try:
        check_eigenvalues(name, values, eps)
    except ValueError as err:
        low = float(np.min(np.diag(matrix)))
        if low < 0:
            raise ValueError(f"{err} (it has negative diagonal entries, min {low:.6g})") from None
        raise
    return values, chol


def factorize(
    matrix: np.ndarray, *, shift: float = 0.0, eps: float = _EPS64, name: str = "kernel"
) -> Factorization:
    """Factorises ``matrix + shift * I`` after checking ``matrix`` is PSD up to round-off.

    Args:
      matrix: (m, m) symmetric float64 kernel.
      shift: ridge added to the diagonal (lambda * n), >= 0.
      eps: machine epsilon of the precision the kernel was given in (the PSD rule's eps).
      name: used in error messages.

    A Cholesky factorisation is accepted only when the smallest eigenvalue of the matrix solved
    (where the eigenvalues are known, up to ``EXACT_CONDITION_MAX_N``) and its smallest pivot are
    not negligible (``> n * eps * max K_ii``); otherwise the next jitter of `JITTER_SCHEDULE` is
    tried (every pivot is at least the smallest eigenvalue, so the pivots alone passed some
    numerically singular kernels without jitter). If every jitter fails, the pseudo-inverse
    over eigenvalues above ``n * eps * max eigenvalue`` is used (float64 eps).

    Raises:
      ValueError: eigenvalues below zero beyond round-off (naming lambda_min / lambda_max), or no
        positive eigenvalue.
    """
    n = matrix.shape[0]
    diag = np.diag(matrix)
    if not np.any(diag > 0):
        if np.any(diag < 0):
            raise ValueError(
                f"{name} has negative diagonal entries; it is not positive semi-definite"
            )
        raise ValueError(f"{name} has an all-zero diagonal; it is not a valid kernel")
    values, chol0 = _checked_spectrum(name, matrix, eps)
    scale = float(np.mean(diag)) if np.mean(diag) > 0 else float(np.max(diag))
    shifted = matrix + shift * np.eye(n) if shift else matrix
    for relative in JITTER_SCHEDULE:
        jitter = relative * scale
        floor = _negligible(shifted) + jitter * n * _EPS64
        if values is not None and values[0] + shift + jitter <= floor:
            continue  # numerically singular: its Cholesky factor would be round-off
        reuse = chol0 is not None and not shift and not jitter
        chol = chol0 if reuse else _cholesky(shifted + jitter * np.eye(n) if jitter else shifted)
        if chol is None:
            continue
        if values is not None:
            low, high = values[0] + shift + jitter, values[-1] + shift + jitter
            cond = float(high / low) if low > 0 else float("inf")
        else:
            pivots = np.diag(chol)
            cond = float((pivots.max() / pivots.min()) ** 2)
        return Factorization("cholesky", float(jitter), cond, n, cholesky=chol)
    all_values, vectors = np.linalg.eigh(shifted)
    tol = n * _EPS64 * max(float(all_values[-1]), 0.0)
    keep = all_values > tol
    if not np.any(keep):
        raise ValueError(f"{name} has no positive eigenvalue")
    kept = all_values[keep]
    return Factorization(
        "eigh",
        0.0,
        float(kept[-1] / kept[0]),
        int(keep.sum()),
        eigenvalues=kept,
        eigenvectors=vectors[:, keep],
    )
