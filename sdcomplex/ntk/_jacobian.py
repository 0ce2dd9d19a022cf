"""Empirical NTK by explicit Jacobian contraction.

Per-example Jacobian rows are computed in reverse mode and Gram blocks are contractions
J(x1) J(x2)^T, parameter leaf by parameter leaf. For the mean and diag kernels the Gram is summed
over logits, one logit's Jacobian (b x P) at a time: that makes blocks C times larger for the same
memory, so the (memory-bound) contraction reads each Jacobian far fewer times. The full kernel
needs all logits of a block at once (b x C x P).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from sdcomplex.ntk._contract import HIGHEST, contract_jacobians
from sdcomplex.ntk._engine import CostEstimate, OutputSpec, ProblemSize


def per_example_logits(fn: Callable[..., Any], params: Any, x: jax.Array) -> jax.Array:
    """Logits of one example ``x`` (no batch axis) as a (C,) vector."""
    return fn(params, x[None]).reshape(-1)


@dataclasses.dataclass(frozen=True)
class JacobianContraction:
    """Explicit per-example Jacobians, contracted leaf by leaf (works for any ``fn``)."""

    name: str = "jacobian"

    def supports(self, fn: Callable[..., Any]) -> bool:
        return True

    def num_parts(self, size: ProblemSize) -> int:
        return 1 if size.outputs == "full" else size.num_outputs

    def estimate(self, size: ProblemSize) -> CostEstimate:
        # Full: one forward and C backward passes (each about two forward passes) per example.
        # Mean/diag: per logit, one forward and one backward pass per example. Then one
        # multiply-add per parameter for each example pair and logit (pair).
        passes = 1 + 2 * size.num_outputs if size.outputs == "full" else 3 * size.num_outputs
        jacobian_flops = size.num_feature_examples * size.forward_flops * passes
        contract_flops = 2.0 * size.num_pairs * size.output_products * size.num_params
        rows = size.num_outputs if size.outputs == "full" else 1
        return CostEstimate(
            flops=jacobian_flops + contract_flops,
            bytes_per_example=float(rows * size.num_params * size.itemsize),
        )

    def features(
        self, fn: Callable[..., Any], params: Any, x: jax.Array, part: jax.Array, spec: OutputSpec
    ) -> list[jax.Array]:
        b = x.shape[0]
        if spec.outputs == "full":

            def jac_one(xi: jax.Array) -> Any:
                return jax.jacrev(lambda p: per_example_logits(fn, p, xi))(params)

            jac = jax.vmap(jac_one)(x)
            return [leaf.reshape(b, leaf.shape[1], -1) for leaf in jax.tree.leaves(jac)]

        def grad_one(xi: jax.Array) -> Any:
            return jax.grad(lambda p: per_example_logits(fn, p, xi)[part])(params)

        grads = jax.vmap(grad_one)(x)
        return [leaf.reshape(b, -1) for leaf in jax.tree.leaves(grads)]

    def contract(
        self,
        fn: Callable[..., Any],
        params: Any,
        f1: list[jax.Array],
        f2: list[jax.Array],
        part: jax.Array,
        spec: OutputSpec,
    ) -> jax.Array:
        if spec.outputs == "full":
            blocks = [contract_jacobians(a, b, "full") for a, b in zip(f1, f2, strict=True)]
            return sum(blocks[1:], blocks[0])
        grams = [jnp.matmul(a, b.T, precision=HIGHEST) for a, b in zip(f1, f2, strict=True)]
        gram = sum(grams[1:], grams[0])
        if spec.outputs == "mean":
            return gram / spec.num_outputs
        return jax.nn.one_hot(part, spec.num_outputs, dtype=gram.dtype)[:, None, None] * gram
