"""The one rule for "negative beyond round-off" and the explicit projection onto the PSD cone.

A kernel is a Gram matrix, so it is positive semi-definite; computed in floating point it may
have eigenvalues slightly below zero. The rule used by every solve (dense Cholesky with jitter,
the eigendecomposition fallback, the kernel student, matrix-free conjugate gradients):

    lambda_min < -PSD_TOLERANCE_FACTOR * m * eps * lambda_max   is an error,

with m the order of the matrix and eps the machine epsilon of the precision the kernel arrived
in (float32 NTKs carry float32 round-off; integer and float64 kernels use float64's). Negative
eigenvalues within the tolerance are round-off and are handled by the solver (jitter or the
pseudo-inverse); beyond it, dropping them would change the answer without a word, so the error
names lambda_min / lambda_max. Projecting onto the PSD cone is an explicit option
(``psd="project"``) whose result records how much was removed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from sdcomplex._checks import is_extended_float

PSD_TOLERANCE_FACTOR = 10.0
"""c in the rule lambda_min < -c * m * eps * lambda_max (measured float32 NTKs: about eps)."""

PSD_MODES = ("error", "project")
"""``"error"``: negative eigenvalues beyond round-off raise; ``"project"``: they are removed."""


def machine_epsilon(dtype: Any) -> float:
    """eps of a floating dtype (float16, bfloat16, float8, float32, float64), float64's else."""
    dt = np.dtype(dtype)
    if np.issubdtype(dt, np.floating) and dt.itemsize <= 8:
        return float(np.finfo(dt).eps)
    if is_extended_float(dt):  # bfloat16, float8: the package that defines them has their finfo
        import ml_dtypes

        return float(ml_dtypes.finfo(dt).eps)
    return float(np.finfo(np.float64).eps)


def psd_tolerance(order: int, eps: float) -> float:
    """Relative tolerance c * m * eps: eigenvalues above -tolerance * lambda_max are round-off."""
    return PSD_TOLERANCE_FACTOR * order * eps


def check_psd_mode(psd: Any) -> str:
    """Validates the ``psd`` option."""
    if psd not in PSD_MODES:
        raise ValueError(f"psd must be one of {', '.join(map(repr, PSD_MODES))}, got {psd!r}")
    return str(psd)


def indefinite_error(name: str, lam_min: float, lam_max: float, tolerance: float) -> ValueError:
    """The error for a kernel negative beyond round-off, naming lambda_min / lambda_max."""
    ratio = lam_min / lam_max if lam_max > 0 else -np.inf
    return ValueError(
        f"{name} is not positive semi-definite: smallest eigenvalue {lam_min:.6g} is "
        f"{ratio:.6g} times the largest ({lam_max:.6g}), below the round-off tolerance "
        f"-{tolerance:.3g}; pass psd='project' to project it onto the PSD cone explicitly"
    )


def check_eigenvalues(name: str, values: np.ndarray, eps: float) -> None:
    """Raises `indefinite_error` if ascending ``values`` break the rule (or none is positive)."""
    lam_min, lam_max = float(values[0]), float(values[-1])
    if lam_max <= 0:
        raise ValueError(
            f"{name} has no positive eigenvalue (largest {lam_max:.6g}); it is not a kernel"
        )
    tolerance = psd_tolerance(values.shape[0], eps)
    if lam_min < -tolerance * lam_max:
        raise indefinite_error(name, lam_min, lam_max, tolerance)


@dataclasses.dataclass(frozen=True)
class Projection:
    """What projecting onto the PSD cone removed.

    Attributes:
      matrix: V max(Lambda, 0) V^T, float64, exactly symmetric.
      removed: ||K - K_+||_F / ||K||_F, the relative size of the negative part removed.
      num_removed: number of negative eigenvalues set to zero.
      min_ratio: lambda_min / lambda_max of the matrix before projection.
    """

    matrix: np.ndarray
    removed: float
    num_removed: int
    min_ratio: float


def project_psd(name: str, matrix: np.ndarray) -> Projection:
    """Nearest PSD matrix in Frobenius norm: negative eigenvalues set to zero.

    Args:
      name: used in the error message.
      matrix: (m, m) symmetric float64.

    Raises:
      ValueError: no positive eigenvalue (the projection would be zero).
    """
    values, vectors = np.linalg.eigh(matrix)
    if values[-1] <= 0:
        raise ValueError(
            f"{name} has no positive eigenvalue (largest {values[-1]:.6g}); its projection onto "
            "the PSD cone is zero"
        )
    negative = values < 0
    if not np.any(negative):
        return Projection(matrix, 0.0, 0, float(values[0] / values[-1]))
    kept = np.maximum(values, 0.0)
    projected = (vectors * kept) @ vectors.T
    projected = 0.5 * (projected + projected.T)
    removed = float(np.sqrt(np.sum(values[negative] ** 2)) / np.sqrt(np.sum(values**2)))
    return Projection(projected, removed, int(negative.sum()), float(values[0] / values[-1]))
