"""sdcomplex: empirical NTKs, supervision complexity and online knowledge distillation in JAX.

Reference: H. Harutyunyan et al., "Supervision Complexity and its Role in Knowledge
Distillation", ICLR 2023. Submodules: `sdcomplex.ntk`, `sdcomplex.complexity`,
`sdcomplex.targets`.
"""

from typing import Any

from sdcomplex import targets
from sdcomplex.complexity import (
    ComplexityResult,
    MarginBound,
    factorize_kernel,
    kernel_alignment,
    margin_bound,
    supervision_complexity,
    target_alignment,
)

__version__ = "0.1.0"

# The NTK names load JAX on first use, so that `import sdcomplex.complexity` (NumPy only) stays
# light.
_NTK_NAMES = (
    "empirical_ntk",
    "flatten_full_kernel",
    "flax_ntk_fn",
    "ntk_fn",
    "plan_ntk",
    "register_implementation",
)


def __getattr__(name: str) -> Any:
    if name in _NTK_NAMES:
        import sdcomplex.ntk

        return getattr(sdcomplex.ntk, name)
    raise AttributeError(f"module 'sdcomplex' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "ComplexityResult",
    "MarginBound",
    "__version__",
    "empirical_ntk",
    "factorize_kernel",
    "flatten_full_kernel",
    "flax_ntk_fn",
    "kernel_alignment",
    "margin_bound",
    "ntk_fn",
    "plan_ntk",
    "register_implementation",
    "supervision_complexity",
    "target_alignment",
    "targets",
]
