"""Supervision complexity, kernel alignment and the margin bound (PAPER.md sections 2-3)."""

from sdcomplex.complexity._alignment import kernel_alignment, target_alignment
from sdcomplex.complexity._bound import MarginBound, margin_bound
from sdcomplex.complexity._complexity import (
    ComplexityResult,
    FactorizedKernel,
    factorize_kernel,
    supervision_complexity,
)
from sdcomplex.complexity._solve import JITTER_SCHEDULE
from sdcomplex.ntk import MatrixFreeComplexity, supervision_complexity_matfree

__all__ = [
    "JITTER_SCHEDULE",
    "ComplexityResult",
    "FactorizedKernel",
    "MarginBound",
    "MatrixFreeComplexity",
    "factorize_kernel",
    "kernel_alignment",
    "margin_bound",
    "supervision_complexity",
    "supervision_complexity_matfree",
    "target_alignment",
]
