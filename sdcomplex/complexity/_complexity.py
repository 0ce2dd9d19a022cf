"""Supervision complexity s(Y) = vec(Y)^T K^{-1} vec(Y) and its adjusted form."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from sdcomplex._checks import as_real, as_real_array, check_real_dtype
from sdcomplex.complexity._full_kernel import flatten_full_kernel
from sdcomplex.complexity._psd import check_psd_mode, machine_epsilon, project_psd
from sdcomplex.complexity._solve import Factorization, as_symmetric_matrix, factorize

OUTPUTS = ("mean", "full", "diag")
"""The forms of a kernel, as every function of the library names them (``outputs``): mean
(n, n), full (n, n, C, C) and diag (C, n, n)."""


def check_outputs(outputs: str) -> None:
    """Raises ``ValueError`` unless ``outputs`` names a kernel form of :data:`OUTPUTS`."""
    if outputs not in OUTPUTS:
        raise ValueError(f"unknown outputs {outputs!r}; expected one of {', '.join(OUTPUTS)}")


@dataclasses.dataclass(frozen=True)
class ComplexityResult:
    """Supervision complexity of one set of targets with respect to one kernel.

    Attributes:
      value: s(Y), the squared RKHS norm of the minimum-norm kernel interpolant of Y.
      adjusted: sqrt(value * trace) / n, invariant to rescaling the kernel; the complexity term
        of the margin bound (PAPER.md section 3) up to the factor 2 / gamma.
      trace: trace of the kernel used for s (mean: tr K; full: tr of the (nC, nC) matrix; diag:
        sum_c tr Theta_cc), before ridge and jitter.
      n: number of examples.
      num_outputs: number of target columns C.
      outputs: the kernel's form, ``"mean"``, ``"full"`` or ``"diag"``, from its shape.
      ridge: lambda of s_lambda (K + lambda * n * I); 0 for interpolation.
      jitter: absolute jitter added to the diagonal for numerical definiteness (the largest over
        the per-logit kernels of a diag kernel); not part of the definition, reported so it can be
        judged.
      condition_number: condition-number estimate of the matrix solved (largest over logits).
      method: ``"cholesky"`` or ``"eigh"`` (pseudo-inverse; see ``rank``).
      rank: numerical rank of the solved matrix (smallest over logits).
      residual: True when an offset f0 was subtracted (targets Y - f0).
      targets: how the targets were made, when known (see `sdcomplex.targets`).
      psd: ``"error"`` (a kernel negative beyond round-off was an error) or ``"project"`` (it was
        projected onto the PSD cone first; value, trace and the rest are those of the projection).
      psd_removed: with ``"project"``, ||K - K_+||_F / ||K||_F of the negative part removed
        (largest over the per-logit kernels); 0.0 when nothing was removed.
    """

    value: float
    adjusted: float
    trace: float
    n: int
    num_outputs: int
    outputs: str
    ridge: float
    jitter: float
    condition_number: float
    method: str
    rank: int
    residual: bool = False
    targets: dict[str, Any] | None = None
    psd: str = "error"
    psd_removed: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        return dataclasses.asdict(self)


def _kernel_outputs(kernel: np.ndarray) -> str:
    if kernel.ndim == 2:
        return "mean"
    if kernel.ndim == 3:
        return "diag"
    if kernel.ndim == 4:
        return "full"
    raise ValueError(
        "kernel must have shape (n, n) (mean), (C, n, n) (diag) or (n, n, C, C) (full); "
        f"got {kernel.shape}"
    )


@dataclasses.dataclass(frozen=True)
class FactorizedKernel:
    """A kernel factorised once in float64, for the complexity of many targets.

    Build it with `factorize_kernel`. Attributes mirror `ComplexityResult`.
    """

    outputs: str
    n: int
    num_outputs: int | None
    trace: float
    ridge: float
    factors: tuple[Factorization, ...]
    psd: str = "error"
    psd_removed: float = 0.0

    def complexity(
        self, targets: Any, *, offset: Any = None, metadata: dict[str, Any] | None = None
    ) -> ComplexityResult:
        """Supervision complexity of ``targets`` (optionally residual ``targets - offset``).

        Args:
          targets: (n,) or (n, C) array, or a `sdcomplex.targets.Targets`.
          offset: array of the same shape (e.g. the student's initial outputs f0), or None.
          metadata: description of the targets to record (taken from a ``Targets``).

        Returns:
          A `ComplexityResult`.

        Raises:
          TypeError: complex or non-numeric targets or offset.
          ValueError: wrong number of rows or columns, empty targets, NaN or inf, or a value
            beyond float64's range (a kernel scaled down to ~1e-300).
        """
        if hasattr(targets, "values") and hasattr(targets, "describe"):
            metadata = metadata if metadata is not None else targets.describe()
            targets = targets.values
        y = as_real_array("targets", targets)
        if y.ndim == 1:
            y = y[:, None]
        if y.ndim != 2:
            raise ValueError(f"targets must have shape (n,) or (n, C), got {np.shape(targets)}")
        if y.shape[0] != self.n:
            raise ValueError(
                f"targets have {y.shape[0]} rows but the kernel is over {self.n} examples"
            )
        if offset is not None:
            f0 = as_real_array("offset", offset)
            if f0.ndim == 1:
                f0 = f0[:, None]
            if f0.shape != y.shape:
                raise ValueError(f"offset has shape {f0.shape}, targets have shape {y.shape}")
            y = y - f0
        c = y.shape[1]
        if self.num_outputs is not None and c != self.num_outputs:
            raise ValueError(
                f"targets have {c} columns but the {self.outputs} kernel has "
                f"{self.num_outputs} outputs"
            )
        with np.errstate(over="ignore"):  # (an overflow is the error below)
            if self.outputs == "mean":
                value = float(np.sum(self.factors[0].quadratic_forms(y)))
            elif self.outputs == "full":
                value = float(self.factors[0].quadratic_forms(y.reshape(-1, 1))[0])
            else:
                value = float(
                    sum(f.quadratic_forms(y[:, k : k + 1])[0] for k, f in enumerate(self.factors))
                )
        value = max(value, 0.0)
        adjusted = math.sqrt(value * self.trace) / self.n
        if not math.isfinite(adjusted):
            raise ValueError(
                f"the complexity overflows float64 (value {value:g}, kernel trace "
                f"{self.trace:g}); rescale the kernel or the targets"
            )
        return ComplexityResult(
            value=value,
            adjusted=adjusted,
            trace=self.trace,
            n=self.n,
            num_outputs=c,
            outputs=self.outputs,
            ridge=self.ridge,
            jitter=max(f.jitter for f in self.factors),
            condition_number=max(f.condition_number for f in self.factors),
            method="eigh" if any(f.method == "eigh" for f in self.factors) else "cholesky",
            rank=min(f.rank for f in self.factors),
            residual=offset is not None,
            targets=metadata,
            psd=self.psd,
            psd_removed=self.psd_removed,
        )


def factorize_kernel(kernel: Any, *, ridge: float = 0.0, psd: str = "error") -> FactorizedKernel:
    """Validates and factorises a kernel in float64 for `supervision_complexity`.

    Every (per-logit) matrix is checked to be positive semi-definite up to round-off first
    (`sdcomplex.complexity._psd`: lambda_min >= -10 m eps lambda_max, eps of the kernel's
    precision), whatever the solver then needs (jitter, pseudo-inverse) or the ridge.

    Args:
      kernel: (n, n) mean kernel, (C, n, n) per-logit kernels, or (n, n, C, C) full kernel, any
        real dtype (it is converted to float64).
      ridge: lambda >= 0; the matrix solved is K + lambda * n * I.
      psd: ``"error"`` (default): eigenvalues below zero beyond round-off raise; ``"project"``:
        the kernel is replaced by its projection onto the PSD cone (negative eigenvalues set to
        zero), recorded in the results' ``psd`` and ``psd_removed``.

    Raises:
      TypeError: complex or non-numeric kernel; ridge not a number.
      ValueError: wrong shape, not square or not symmetric, NaN or inf, negative ridge, unknown
        ``psd``, or (with ``psd="error"``) eigenvalues below zero beyond round-off, the message
        naming lambda_min / lambda_max; a diagonal plus ``ridge * n`` beyond float64's range.
    """
    ridge = as_real("ridge", ridge, low=0.0)
    psd = check_psd_mode(psd)
    k = np.asarray(kernel)
    check_real_dtype("kernel", k.dtype)
    eps = machine_epsilon(k.dtype)
    outputs = _kernel_outputs(k)
    if outputs == "mean":
        mats, num_outputs = [k], None
    elif outputs == "diag":
        if k.shape[1] != k.shape[2]:
            raise ValueError(f"per-logit kernels must be (C, n, n), got {k.shape}")
        mats, num_outputs = list(k), k.shape[0]
    else:
        if k.shape[0] != k.shape[1] or k.shape[2] != k.shape[3]:
            raise ValueError(f"a full kernel must have shape (n, n, C, C), got {k.shape}")
        mats, num_outputs = [flatten_full_kernel(k)], k.shape[2]
    if not mats:
        raise ValueError(f"kernel is empty (shape {k.shape})")
    names = [f"kernel (logit {i})" for i in range(len(mats))] if outputs == "diag" else ["kernel"]
    mats = [as_symmetric_matrix(name, m) for name, m in zip(names, mats, strict=True)]
    removed = 0.0
    if psd == "project":
        projections = [project_psd(name, m) for name, m in zip(names, mats, strict=True)]
        mats = [p.matrix for p in projections]
        removed = max(p.removed for p in projections)
    n = k.shape[1] if outputs == "diag" else k.shape[0]
    trace = float(sum(np.trace(m) for m in mats))
    largest = max(float(np.max(np.diag(m))) for m in mats)
    if not math.isfinite(trace) or not math.isfinite(largest + ridge * n):
        raise ValueError(
            f"the kernel's diagonal plus ridge * n ({ridge:g} * {n}) overflows float64 "
            f"(largest diagonal entry {largest:g}); rescale the kernel or lower the ridge"
        )
    factors = tuple(
        factorize(m, shift=ridge * n, eps=eps, name=name)
        for name, m in zip(names, mats, strict=True)
    )
    return FactorizedKernel(outputs, n, num_outputs, trace, ridge, factors, psd, removed)


def supervision_complexity(
    kernel: Any, targets: Any, *, offset: Any = None, ridge: float = 0.0, psd: str = "error"
) -> ComplexityResult:
    """Supervision complexity s(Y) of targets with respect to a kernel (PAPER.md section 2).

    The kernel's shape selects the form:

    * mean (n, n): s(Y) = sum_c Y[:, c]^T K^{-1} Y[:, c] = tr(Y^T K^{-1} Y);
    * full (n, n, C, C): s(Y) = vec(Y)^T Theta^{-1} vec(Y) with the example-major flattening;
    * diag (C, n, n): s(Y) = sum_c Y[:, c]^T Theta_cc^{-1} Y[:, c].

    Solves run in float64 whatever the kernel's precision: Cholesky, adding an escalating jitter
    (reported in the result) when the kernel is numerically singular, then a pseudo-inverse from
    the eigendecomposition if no jitter of the schedule works. The value is never NaN or negative.
    A kernel with eigenvalues below zero beyond round-off is an error, never silently clipped;
    ``psd="project"`` projects it onto the PSD cone explicitly (see `factorize_kernel`).

    Args:
      kernel: the kernel (any float dtype), e.g. from `sdcomplex.ntk.empirical_ntk`.
      targets: (n,) or (n, C) array, or a `sdcomplex.targets.Targets`.
      offset: optional (n,) or (n, C) outputs f0 for residual targets Y - f0.
      ridge: lambda >= 0 for the kernel-ridge variant s_lambda with K + lambda * n * I.
      psd: ``"error"`` or ``"project"``, as in `factorize_kernel`.

    Returns:
      A `ComplexityResult` with the value, the adjusted value sqrt(s * tr K) / n, the trace, n,
      the jitter added, a condition-number estimate and the method used.

    Raises:
      TypeError: complex or non-numeric kernel, targets or offset.
      ValueError: kernel not square or not symmetric, eigenvalues below zero beyond round-off
        (with ``psd="error"``), NaN or inf in kernel or targets, empty targets, target rows that
        don't match the kernel, negative ridge.

    Example:
      >>> import numpy as np
      >>> r = supervision_complexity(np.eye(3), np.array([1.0, -1.0, 2.0]))
      >>> round(r.value, 6), round(r.adjusted, 6)  # 6 and sqrt(6 * 3) / 3
      (6.0, 1.414214)
    """
    return factorize_kernel(kernel, ridge=ridge, psd=psd).complexity(targets, offset=offset)
