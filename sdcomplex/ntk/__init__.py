"""Empirical neural tangent kernels of pure functions and Flax models.

Main entry point: `empirical_ntk(fn, params, x1, x2=None, outputs="mean")`. Implementations are
pluggable (`register_implementation`); ``"auto"`` picks the cheapest by a cost estimate.
`ntk_fn(model)` turns a linen (with its variables), NNX or Equinox model into ``(fn, params)``;
`load_run_checkpoint`, `run_examples` and `run_ntk` give kernels of trained runs.
"""

from sdcomplex.complexity._full_kernel import flatten_full_kernel, unflatten_full_kernel
from sdcomplex.ntk._adapters import ntk_fn
from sdcomplex.ntk._api import (
    NTKPlan,
    compute_with_plan,
    default_memory_budget,
    empirical_ntk,
    plan_ntk,
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
from sdcomplex.ntk._kernel_files import load_kernel, save_kernel
from sdcomplex.ntk._matfree import ntk_diagonal_blocks, ntk_vector_product
from sdcomplex.ntk._ntvp import NTKVectorProducts
from sdcomplex.ntk._runs import (
    RunCheckpoint,
    RunExamples,
    load_run_checkpoint,
    run_examples,
    run_inputs,
    run_logits,
    run_ntk,
)
from sdcomplex.ntk._structured import StructuredNTK

register_implementation(JacobianContraction(), overwrite=True)
register_implementation(NTKVectorProducts(), overwrite=True)
register_implementation(StructuredNTK(), overwrite=True)

__all__ = [
    "OUTPUTS",
    "CostEstimate",
    "FlaxNTKFunction",
    "MatrixFreeComplexity",
    "NTKImplementation",
    "NTKPlan",
    "ProblemSize",
    "RunCheckpoint",
    "RunExamples",
    "available_implementations",
    "compute_with_plan",
    "default_memory_budget",
    "empirical_ntk",
    "flatten_full_kernel",
    "flax_ntk_fn",
    "get_implementation",
    "load_kernel",
    "load_run_checkpoint",
    "ntk_diagonal_blocks",
    "ntk_fn",
    "ntk_vector_product",
    "plan_ntk",
    "register_implementation",
    "run_examples",
    "run_inputs",
    "run_logits",
    "run_ntk",
    "save_kernel",
    "supervision_complexity_matfree",
    "unflatten_full_kernel",
]
