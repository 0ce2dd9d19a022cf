"""The full (n1, n2, C, C) kernel as one example-major matrix, and back (NumPy only)."""

from __future__ import annotations

from typing import Any

import numpy as np


def flatten_full_kernel(kernel: Any) -> np.ndarray:
    """(n1, n2, C, C) full kernel to the example-major (n1*C, n2*C) matrix.

    Entry [i*C + c, j*C + d] is Theta_cd(x_i, x_j), matching ``targets.reshape(-1)`` for targets
    of shape (n, C).

    Raises:
      ValueError: if ``kernel`` is not 4-dimensional with equal output axes.

    Example:
      >>> k = np.arange(16.0).reshape(2, 2, 2, 2)
      >>> flatten_full_kernel(k)[1, 2] == k[0, 1, 1, 0]
      np.True_
    """
    k = np.asarray(kernel)
    if k.ndim != 4 or k.shape[2] != k.shape[3]:
        raise ValueError(f"a full kernel has shape (n1, n2, C, C), got {k.shape}")
    n1, n2, c, _ = k.shape
    return k.transpose(0, 2, 1, 3).reshape(n1 * c, n2 * c)


def unflatten_full_kernel(matrix: Any, num_outputs: int) -> np.ndarray:
    """Inverse of `flatten_full_kernel`: (n1*C, n2*C) to (n1, n2, C, C).

    Raises:
      ValueError: if the matrix's sides are not multiples of ``num_outputs``.
    """
    m = np.asarray(matrix)
    c = int(num_outputs)
    if m.ndim != 2 or c < 1 or m.shape[0] % c or m.shape[1] % c:
        raise ValueError(f"cannot split a matrix of shape {m.shape} into {num_outputs} outputs")
    return m.reshape(m.shape[0] // c, c, m.shape[1] // c, c).transpose(0, 2, 1, 3)
