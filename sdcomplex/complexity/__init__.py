"""Supervision complexity, kernel alignment and the margin bound (PAPER.md sections 2-3).

Importing this package imports numpy and scipy only. The matrix-free solver
(`supervision_complexity_matfree`, `MatrixFreeComplexity`) lives in `sdcomplex.ntk` and needs
JAX; it is re-exported here lazily, loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sdcomplex.complexity._alignment import kernel_alignment, target_alignment
from sdcomplex.complexity._bound import MarginBound, margin_bound
from sdcomplex.complexity._complexity import (
    ComplexityResult,
    FactorizedKernel,
    factorize_kernel,
    supervision_complexity,
)
from sdcomplex.complexity._psd import PSD_MODES, PSD_TOLERANCE_FACTOR
from sdcomplex.complexity._solve import JITTER_SCHEDULE

if TYPE_CHECKING:
    from sdcomplex.ntk._complexity_matfree import (
        MatrixFreeComplexity,
        supervision_complexity_matfree,
    )

_LAZY = {
    "MatrixFreeComplexity": "sdcomplex.ntk._complexity_matfree",
    "supervision_complexity_matfree": "sdcomplex.ntk._complexity_matfree",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "JITTER_SCHEDULE",
    "PSD_MODES",
    "PSD_TOLERANCE_FACTOR",
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
