"""Empirical NTK by NTK-vector products, never holding a whole Jacobian.

Column (j, c') of the Gram is Theta(x1, x2_j)[:, :, c'] = J(x1) v with v = J(x2_j)^T e_c', one
reverse-mode product (vjp) followed by one forward-mode product (jvp, through a linearisation of
``fn`` at the row block computed once). Columns are processed in chunks by ``lax.map``, so memory
is about ``chunk`` parameter vectors plus the row block's linearisation, whatever n and C are.
Slower than the Jacobian contraction for most networks, but usable when a per-example Jacobian
does not fit in memory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.extend.core as jex
import jax.numpy as jnp

from sdcomplex.ntk._contract import reduce_full
from sdcomplex.ntk._engine import CostEstimate, OutputSpec, ProblemSize


@dataclasses.dataclass(frozen=True)
class NTKVectorProducts:
    """Matrix-free Gram columns from vjp/jvp pairs.

    Attributes:
      chunk: how many columns are computed at once (vmapped); memory grows with it.
    """

    name: str = "ntvp"
    chunk: int = 8

    def supports(self, fn: Callable[..., Any]) -> bool:
        return True

    def estimate(self, size: ProblemSize) -> CostEstimate:
        # Each of the n2*C columns costs a forward+backward pass on one example and a jvp
        # (about two forward passes) over the row block; the linearisation costs one forward
        # pass per row example and column block.
        columns = float(size.n2 * size.num_outputs)
        if size.symmetric:
            columns = columns * (size.n1 + 1) / (2 * size.n1)
        flops = columns * size.forward_flops * (3.0 + 2.0 * size.n1)
        return CostEstimate(
            flops=flops,
            # A row block's linearisation keeps about one forward pass of activations per
            # example; approximate activations by a parameter vector (conservative for convnets).
            bytes_per_example=float(size.num_params * size.itemsize) / 4,
            fixed_bytes=float(self.chunk * size.num_params * size.itemsize * 3),
        )

    def num_parts(self, size: ProblemSize) -> int:
        return 1

    def specialize(
        self,
        fn: Callable[..., Any],
        params: Any,
        x: Any,
        size: ProblemSize,
        *,
        memory_budget: float,
    ) -> NTKVectorProducts:
        """This implementation, once ``fn`` is known to have forward-mode derivatives.

        Raises:
          TypeError: ``fn`` calls a ``jax.custom_vjp`` function (which has none).
        """
        if _calls_custom_vjp(jax.make_jaxpr(fn)(params, x[:1]).jaxpr):
            raise TypeError(
                "implementation 'ntvp' needs forward-mode derivatives of fn, which a "
                "jax.custom_vjp function in it does not have; use 'jacobian' or 'structured'"
            )
        return self

    def features(
        self, fn: Callable[..., Any], params: Any, x: jax.Array, part: jax.Array, spec: OutputSpec
    ) -> jax.Array:
        return x

    def contract(
        self,
        fn: Callable[..., Any],
        params: Any,
        f1: jax.Array,
        f2: jax.Array,
        part: jax.Array,
        spec: OutputSpec,
    ) -> jax.Array:
        x1, x2 = f1, f2
        _, row_jvp = jax.linearize(lambda p: fn(p, x1), params)
        out = jax.eval_shape(lambda: fn(params, x1[:1]))
        num_outputs = out.shape[-1]
        b1, b2 = x1.shape[0], x2.shape[0]

        def column(index: jax.Array) -> jax.Array:
            j, c = index // num_outputs, index % num_outputs
            xj = jax.lax.dynamic_slice_in_dim(x2, j, 1)
            _, vjp = jax.vjp(lambda p: fn(p, xj), params)
            (v,) = vjp(jax.nn.one_hot(c, num_outputs, dtype=out.dtype)[None])
            return row_jvp(v)  # (b1, C): Theta(x1, x2_j)[:, :, c]

        cols = jax.lax.map(column, jnp.arange(b2 * num_outputs), batch_size=self.chunk)
        full = cols.reshape(b2, num_outputs, b1, num_outputs).transpose(2, 0, 3, 1)
        return reduce_full(full, spec.outputs)


def _calls_custom_vjp(jaxpr: Any) -> bool:
    """Whether a jaxpr, or any jaxpr nested in it, calls a ``jax.custom_vjp`` function."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name.startswith("custom_vjp"):
            return True
        for value in eqn.params.values():
            for sub in value if isinstance(value, tuple | list) else (value,):
                if isinstance(sub, jex.ClosedJaxpr) and _calls_custom_vjp(sub.jaxpr):
                    return True
                if isinstance(sub, jex.Jaxpr) and _calls_custom_vjp(sub):
                    return True
    return False
