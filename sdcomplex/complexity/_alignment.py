"""Kernel alignment (NTK similarity) and kernel-target alignment."""

from __future__ import annotations

from typing import Any

import numpy as np

from sdcomplex._checks import as_real_array
from sdcomplex.complexity._full_kernel import flatten_full_kernel

_SAFE_PEAK = (1e-100, 1e100)
"""Largest entries whose squares and sums stay normal float64 numbers (no rescaling)."""


def _unit_scaled(a: np.ndarray) -> np.ndarray:
    """``a / max|a|`` when its largest entry lies outside :data:`_SAFE_PEAK`, else ``a`` itself
    (ordinary inputs are used as given, bit for bit): both alignments are invariant to the
    scale of each argument, and this keeps their products and norms finite and nonzero for
    every finite input (entries past 1e154 overflowed to NaN, below 1e-162 underflowed to a
    "zero kernel")."""
    peak = float(np.max(np.abs(a)))
    if peak == 0 or _SAFE_PEAK[0] <= peak <= _SAFE_PEAK[1]:
        return a
    return a / peak


def kernel_alignment(k1: Any, k2: Any) -> float:
    """A(K1, K2) = <K1, K2>_F / (||K1||_F ||K2||_F), computed in float64.

    "NTK similarity" is the alignment of a network's NTK at initialisation with its NTK later in
    training, on a fixed probe set. Kernels of any (equal) shape are accepted: mean (n, n), full
    (n, n, C, C) or diag (C, n, n).

    Args:
      k1, k2: arrays of the same shape.

    Returns:
      A float in [-1, 1] (in [0, 1] for positive semi-definite kernels).

    Raises:
      TypeError: complex or non-numeric kernels.
      ValueError: different shapes, empty, NaN or inf, or a zero kernel.

    Example:
      >>> import numpy as np
      >>> kernel_alignment(np.eye(2), 3 * np.eye(2))
      1.0
    """
    a = as_real_array("k1", k1)
    b = as_real_array("k2", k2)
    if a.shape != b.shape:
        raise ValueError(f"kernels have different shapes: {a.shape} and {b.shape}")
    a, b = _unit_scaled(a), _unit_scaled(b)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        raise ValueError("kernel alignment is undefined for a zero kernel")
    return float(np.vdot(a, b) / (na * nb))


def target_alignment(kernel: Any, targets: Any) -> float:
    """Kernel-target alignment y^T K y / (||K||_F ||y||^2), in float64.

    For targets of shape (n, C) with a mean kernel (n, n) this is
    sum_c y_c^T K y_c / (||K||_F ||Y||_F^2); a full kernel (n, n, C, C) uses vec(Y) against the
    flattened (nC, nC) matrix.

    Args:
      kernel: (n, n) or (n, n, C, C).
      targets: (n,) or (n, C).

    Raises:
      TypeError: complex or non-numeric kernel or targets.
      ValueError: shape mismatch, empty, NaN or inf, zero kernel or zero targets.
    """
    k = as_real_array("kernel", kernel)
    y = as_real_array("targets", targets)
    if y.ndim == 1:
        y = y[:, None]
    if k.ndim == 4:
        n, _, c, _ = k.shape
        if y.shape != (n, c):
            raise ValueError(f"targets must have shape {(n, c)} for this kernel, got {y.shape}")
        k = flatten_full_kernel(k)
        y = y.reshape(-1, 1)
    elif k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"kernel must be (n, n) or (n, n, C, C), got {k.shape}")
    if y.ndim != 2 or y.shape[0] != k.shape[0]:
        raise ValueError(f"targets have {y.shape[0]} rows but the kernel is {k.shape[0]} x ...")
    k, y = _unit_scaled(k), _unit_scaled(y)
    kn, yn = np.linalg.norm(k), float(np.sum(y * y))
    if kn == 0 or yn == 0:
        raise ValueError("target alignment is undefined for a zero kernel or zero targets")
    return float(np.sum(y * (k @ y)) / (kn * yn))
