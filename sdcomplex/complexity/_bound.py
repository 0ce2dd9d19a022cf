"""The margin bound of PAPER.md section 3 for kernel classifiers (binary case)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from sdcomplex._checks import as_real, as_real_array
from sdcomplex.complexity._complexity import FactorizedKernel, factorize_kernel

# Sum over k in Z of 1 / (3 (|k| + 1)^2) = (2 * pi^2 / 6 - 1) / 3 < 1: the confidence split of the
# union bound over the grid B_k = 2^k.
_GRID_WEIGHT = 3.0


@dataclasses.dataclass(frozen=True)
class MarginBound:
    """The three terms of the margin bound and their sum.

    P(Y f(X) <= 0) <= margin_loss + complexity_term + confidence_term = total, with

    * margin_loss = (1/n) sum_i 1[y_i f(x_i) <= gamma] (true labels, student outputs);
    * complexity_term = (2 / gamma) * B * sqrt(tr K) / n with B = sqrt(s(y*)) for teacher
      targets y* (so it is 2 / gamma times their adjusted supervision complexity);
    * confidence_term = 3 * sqrt(ln(2 / delta) / (2 n)).

    Attributes:
      margin_loss, complexity_term, confidence_term, total: the terms and their sum.
      rkhs_norm: B used in the complexity term (rounded up to the grid when ``union_over_norm``).
      supervision_complexity: s(y*).
      adjusted_complexity: sqrt(s(y*) tr K) / n.
      trace: tr K.
      n, gamma, delta: as given; ``delta_used`` is the confidence after the union bound.
      union_over_norm: whether B was made data-dependent by a union bound over B_k = 2^k.
      psd, psd_removed: as in `ComplexityResult` (whether the kernel was projected onto the
        PSD cone, and the relative Frobenius norm removed).
    """

    margin_loss: float
    complexity_term: float
    confidence_term: float
    total: float
    rkhs_norm: float
    supervision_complexity: float
    adjusted_complexity: float
    trace: float
    n: int
    gamma: float
    delta: float
    delta_used: float
    union_over_norm: bool
    psd: str = "error"
    psd_removed: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        return dataclasses.asdict(self)


def _vector(name: str, values: Any, n: int | None = None) -> np.ndarray:
    v = as_real_array(name, values)
    if v.ndim == 2 and v.shape[1] == 1:
        v = v[:, 0]
    if v.ndim != 1:
        raise ValueError(f"{name} must have shape (n,) for a binary task, got {np.shape(values)}")
    if n is not None and v.shape[0] != n:
        raise ValueError(f"{name} has {v.shape[0]} entries, expected {n}")
    return v


def margin_bound(
    kernel: Any,
    teacher_targets: Any,
    labels: Any,
    student_outputs: Any,
    *,
    gamma: float,
    delta: float = 0.05,
    union_over_norm: bool = False,
    psd: str = "error",
) -> MarginBound:
    """Terms of the margin bound for a binary kernel (linearised) student.

    With probability at least 1 - delta over the sample, for gamma > 0 fixed in advance:
    P(Y f(X) <= 0) <= (1/n) sum_i 1[y_i f(x_i) <= gamma] + (2/gamma) B sqrt(tr K) / n
    + 3 sqrt(ln(2/delta) / (2n)) for every f in the RKHS ball of radius B (Mohri et al.,
    Foundations of Machine Learning, margin bound for kernel classes). A student that fits the
    teacher's targets y* has B = sqrt(s(y*)).

    By default B is treated as fixed in advance (the plain bound). With ``union_over_norm``, B is
    chosen after seeing the data: the bound is applied for every B_k = 2^k, k in Z, with
    confidence delta_k = delta / (3 (|k| + 1)^2) (these sum to less than delta), and B is rounded
    up to the grid; the confidence term then uses delta_k.

    Args:
      kernel: (n, n) kernel of the student on the training inputs, or its `FactorizedKernel`
        (`factorize_kernel(kernel, psd=...)`, no ridge), to bound many targets with one
        factorisation (``psd`` is then the factorisation's).
      teacher_targets: (n,) real-valued teacher targets y* (e.g. margins or +-1 labels).
      labels: (n,) true labels in {-1, +1}.
      student_outputs: (n,) real outputs f(x_i) of the student on the training inputs.
      gamma: margin, > 0.
      delta: failure probability, in (0, 1).
      union_over_norm: make B data-dependent (see above).
      psd: ``"error"`` (default) or ``"project"``, as in `supervision_complexity`: a kernel with
        eigenvalues below zero beyond round-off is an error unless projected explicitly.

    Returns:
      A `MarginBound`.

    Raises:
      TypeError: complex or non-numeric arrays, gamma or delta not a number.
      ValueError: shapes, empty arrays, NaN or inf, labels not in {-1, +1}, gamma <= 0, delta
        outside (0, 1), a kernel negative beyond round-off (with ``psd="error"``).
    """
    gamma = as_real("gamma", gamma, low=0.0, low_open=True)
    delta = as_real("delta", delta, low=0.0, high=1.0, low_open=True, high_open=True)
    union_over_norm = bool(union_over_norm)
    if isinstance(kernel, FactorizedKernel):
        if kernel.outputs != "mean" or kernel.ridge:
            raise ValueError(
                "the margin bound needs a factorised (n, n) kernel without ridge, got a "
                f"{kernel.outputs} kernel with ridge {kernel.ridge}"
            )
        factorized = kernel
    else:
        k = np.asarray(kernel)
        if k.ndim != 2:
            raise ValueError(
                f"the margin bound needs an (n, n) kernel of a binary task, got {k.shape}"
            )
        factorized = factorize_kernel(k, psd=psd)
    n = factorized.n
    y_star = _vector("teacher_targets", teacher_targets, n)
    y = _vector("labels", labels, n)
    f = _vector("student_outputs", student_outputs, n)
    if not np.all(np.isin(y, (-1.0, 1.0))):
        raise ValueError("labels must be -1 or +1")
    result = factorized.complexity(y_star)
    norm = math.sqrt(result.value)
    delta_used = delta
    if union_over_norm:
        level = math.ceil(math.log2(norm)) if norm > 0 else 0
        norm = 2.0**level
        delta_used = delta / (_GRID_WEIGHT * (abs(level) + 1) ** 2)
    margin_loss = float(np.mean(y * f <= gamma))
    complexity_term = 2.0 / gamma * norm * math.sqrt(result.trace) / n
    confidence_term = 3.0 * math.sqrt(math.log(2.0 / delta_used) / (2.0 * n))
    return MarginBound(
        margin_loss=margin_loss,
        complexity_term=complexity_term,
        confidence_term=confidence_term,
        total=margin_loss + complexity_term + confidence_term,
        rkhs_norm=norm,
        supervision_complexity=result.value,
        adjusted_complexity=result.adjusted,
        trace=result.trace,
        n=n,
        gamma=float(gamma),
        delta=float(delta),
        delta_used=delta_used,
        union_over_norm=union_over_norm,
        psd=result.psd,
        psd_removed=result.psd_removed,
    )
