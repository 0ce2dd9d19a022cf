"""sdcomplex: empirical NTKs, supervision complexity and online knowledge distillation in JAX.

Reference: H. Harutyunyan et al., "Supervision Complexity and its Role in Knowledge
Distillation", ICLR 2023. Submodules: `sdcomplex.ntk`, `sdcomplex.complexity`,
`sdcomplex.targets`.
"""

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
from sdcomplex.ntk import (
    empirical_ntk,
    flatten_full_kernel,
    flax_ntk_fn,
    plan_ntk,
    register_implementation,
)

__version__ = "0.1.0"

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
    "plan_ntk",
    "register_implementation",
    "supervision_complexity",
    "target_alignment",
    "targets",
]
