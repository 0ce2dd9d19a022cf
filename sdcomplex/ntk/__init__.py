"""Empirical neural tangent kernels of pure functions and Flax models.

Main entry point: `empirical_ntk(fn, params, x1, x2=None, outputs="mean")`; `ntk_fn(model)`
turns a linen (with its variables), NNX or Equinox model into ``(fn, params)``. Implementations are
pluggable (`register_implementation`); ``"auto"`` picks the cheapest by a cost estimate.
"""

from sdcomplex.ntk._adapters import ntk_fn
from sdcomplex.ntk._api import (
    DEFAULT_MEMORY_BUDGET,
    NTKPlan,
    compute_with_plan,
    default_memory_budget,
    empirical_ntk,
    flatten_full_kernel,
    plan_ntk,
    unflatten_full_kernel,
)
from sdcomplex.ntk._complexity_matfree import (
    MatrixFreeComplexity,
    supervision_complexity_matfree,
)
from sdcomplex.ntk._engine import (
    OUTPUTS,
    CostEstimate,
    NTKImplementation,
    ProblemSize,
    available_implementations,
    get_implementation,
    register_implementation,
)
from sdcomplex.ntk._flax import FlaxNTKFunction, flax_ntk_fn
from sdcomplex.ntk._jacobian import JacobianContraction
from sdcomplex.ntk._matfree import ntk_diagonal_blocks, ntk_vector_product
from sdcomplex.ntk._ntvp import NTKVectorProducts
from sdcomplex.ntk._structured import StructuredNTK

register_implementation(JacobianContraction(), overwrite=True)
register_implementation(NTKVectorProducts(), overwrite=True)
register_implementation(StructuredNTK(), overwrite=True)

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "OUTPUTS",
    "CostEstimate",
    "FlaxNTKFunction",
    "JacobianContraction",
    "MatrixFreeComplexity",
    "NTKImplementation",
    "NTKPlan",
    "NTKVectorProducts",
    "ProblemSize",
    "StructuredNTK",
    "available_implementations",
    "compute_with_plan",
    "default_memory_budget",
    "empirical_ntk",
    "flatten_full_kernel",
    "flax_ntk_fn",
    "get_implementation",
    "ntk_diagonal_blocks",
    "ntk_fn",
    "ntk_vector_product",
    "plan_ntk",
    "register_implementation",
    "supervision_complexity_matfree",
    "unflatten_full_kernel",
]
