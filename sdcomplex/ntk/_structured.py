"""Structured empirical NTK of any function ``fn(params, x)`` (``implementation="structured"``).

The Gram is a sum over the places where parameters meet examples. `sdcomplex.ntk._sites`
finds them in the function's jaxpr (dense and convolution sites, elementwise scales and
shifts) and partitions the parameter leaves into direct, composite and fallback leaves;
`sdcomplex.ntk._site_features` computes their per-example features from one forward pass and
one batched backward pass per logit. For a direct site:

* a dense site (one position) contributes (A A^T) * (G_c G_d^T): no P-sized vector is formed
  ("outer" method). With S positions (extra input axes, or convolution patches) the same form
  sums over position pairs, S^2 times the work;
* otherwise per-example weight gradients are formed explicitly (patches^T @ g as one batched
  matrix multiply for all logits at once) and contracted by a matrix multiply ("explicit").

For each site the planner picks the cheaper method by a floating-point-operation estimate
(`specialize`, `sdcomplex.ntk._structured_costs`), and ``"auto"`` compares the whole estimate
with the other implementations'. Parameters used anywhere else get explicit per-example
Jacobians, so the result is exact for every function whose examples do not interact (checked by
a perturbation when planning).
Flax linen models (`flax_ntk_fn`), Flax NNX and Equinox models written as ``fn(params, x)``
and plain JAX functions all go through the same analysis.

The Gram is summed over parts of ``logits_per_part`` logits (mean and diag kernels; all logits
at once when that fits the memory budget, as it does for 10 classes); the full kernel uses one
part. Every contraction runs at ``Precision.HIGHEST`` (`sdcomplex.ntk._structured_contract`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sdcomplex.ntk._contract import HIGHEST
from sdcomplex.ntk._engine import CostEstimate, OutputSpec, ProblemSize
from sdcomplex.ntk._layers import Outer
from sdcomplex.ntk._program import trace_program
from sdcomplex.ntk._site_features import (
    as_explicit,
    composite_features,
    fallback_features,
    forward_and_cotangents,
    operand_gradients,
    tap_features,
)
from sdcomplex.ntk._site_match import Site
from sdcomplex.ntk._sites import (
    Analysis,
    UnsupportedStructure,
    all_fallback,
    analyse,
    check_custom_rules,
    check_independent,
)
from sdcomplex.ntk._structured_contract import (
    batch_of,
    contract_explicit,
    contract_outer,
    dtype_of,
    num_logits,
)
from sdcomplex.ntk._structured_costs import Costs, method_of, operand_costs, tap_costs

SMALL_FEATURES = 1 << 16
"""Explicit features with at most this many numbers per example are concatenated into one."""

MIN_BLOCK = 128
"""Logits per part are reduced until a block of this many examples fits the memory budget."""


@dataclasses.dataclass(frozen=True)
class StructuredNTK:
    """Structured NTK of any ``fn(params, x)`` (see the module docstring).

    `specialize` (called by `plan_ntk`) traces the function, finds its sites, picks each
    site's method by cost and the logits per part by memory; the unspecialised object does the
    same at trace time with the block as the problem size.

    Attributes:
      analysis: the sites (with their methods) and the leaf partition (None until specialised).
      composite_size: number of parameters in composite leaves.
      fallback_size: number of parameters with explicit Jacobians.
      logits_per_part: logits per part for the mean and diag kernels (None: all).
    """

    name: str = "structured"
    analysis: Analysis | None = None
    composite_size: int = 0
    fallback_size: int = 0
    logits_per_part: int | None = None

    def supports(self, fn: Callable[..., Any]) -> bool:
        return callable(fn)

    @property
    def sites(self) -> tuple[Site, ...]:
        """The planned sites (empty until specialised)."""
        return () if self.analysis is None else self.analysis.sites

    # --- planning -------------------------------------------------------------------------

    def specialize(
        self,
        fn: Callable[..., Any],
        params: Any,
        x: Any,
        size: ProblemSize,
        *,
        memory_budget: float,
    ) -> StructuredNTK:
        """A copy planned for this function and problem: site methods and logits per part.

        Raises:
          ValueError: if the function's examples interact (see `check_independent`).
        """
        if len(jax.eval_shape(fn, params, x[:1]).shape) == 1:
            from sdcomplex.ntk._api import _AsMatrix  # what compute_with_plan will pass

            fn = _AsMatrix(fn)
        leaves, treedef = jax.tree.flatten(params)
        shape, dtype = tuple(x.shape[1:]), x.dtype
        programs = [
            trace_program(fn, leaves, treedef, jax.ShapeDtypeStruct((b, *shape), dtype))
            for b in (2, 3)
        ]
        try:
            analysis = analyse(programs[0], programs[1])
        except UnsupportedStructure:
            analysis = all_fallback(len(leaves))
        check_independent(fn, params, x)
        if analysis.signature is not None:
            analysis = check_custom_rules(programs[0], programs[1], analysis, leaves, x)
        sizes = [int(np.size(leaf)) for leaf in leaves]
        base = dataclasses.replace(
            self,
            analysis=analysis,
            composite_size=sum(sizes[i] for i in analysis.composite),
            fallback_size=sum(sizes[i] for i in analysis.fallback),
        )
        c = size.num_outputs
        m = c
        if size.outputs != "full":
            target = min(max(size.n1, size.n2), MIN_BLOCK)
            while m > 1:
                planned = base._with_methods(size, m)
                if 2 * target * planned._bytes_per_example(size, m) <= memory_budget:
                    break
                m = max(1, m // 2)
            m = math.ceil(c / math.ceil(c / m))
        return base._with_methods(size, m)

    def _with_methods(self, size: ProblemSize, m: int) -> StructuredNTK:
        assert self.analysis is not None
        parts = 1 if size.outputs == "full" else math.ceil(size.num_outputs / m)
        sites = []
        for site in self.analysis.sites:
            if site.tap is not None and site.leaf is not None:
                explicit, outer = tap_costs(site.tap, size, m, parts)
                method = "outer" if outer.flops < explicit.flops else "explicit"
                site = dataclasses.replace(site, tap=site.tap.with_method(method))
            sites.append(site)
        analysis = dataclasses.replace(self.analysis, sites=tuple(sites))
        return dataclasses.replace(self, analysis=analysis, logits_per_part=m)

    def _logits(self, size: ProblemSize | OutputSpec) -> int:
        c = size.num_outputs
        if size.outputs == "full" or self.logits_per_part is None:
            return c
        return min(self.logits_per_part, c)

    def num_parts(self, size: ProblemSize) -> int:
        return math.ceil(size.num_outputs / self._logits(size))

    def _site_costs(self, site: Site, size: ProblemSize, m: int, parts: int) -> Costs:
        if method_of(site) == "operand":
            return operand_costs(site, size, m, parts)
        assert site.tap is not None
        explicit, outer = tap_costs(site.tap, size, m, parts)
        return outer if site.tap.method == "outer" else explicit

    def _bytes_per_example(self, size: ProblemSize, m: int) -> float:
        """Feature bytes per example for the block-size rule "two blocks fit the budget".

        Features are kept for two blocks, while the forward activations, the output cotangents
        and the patches exist for one block at a time: they count half.
        """
        parts = math.ceil(size.num_outputs / m)
        stored = m * (2.0 * self.fallback_size + self.composite_size)
        transient = 0.0
        largest = 0.0
        for site in self.sites:
            chosen = self._site_costs(site, size, m, parts)
            stored += chosen.stored
            largest = max(largest, chosen.transient)
            # Forward residuals (about twice the sites' inputs and outputs, for the
            # activations and pooling between them) and the cotangents of m logits.
            transient += 2 * (site.act_size + site.out_size) + m * site.out_size
        return (stored + (transient + largest) / 2) * size.itemsize

    def estimate(self, size: ProblemSize) -> CostEstimate:
        if self.analysis is None:
            # Not planned (plan_ntk always plans): as expensive as the Jacobian contraction.
            from sdcomplex.ntk._jacobian import JacobianContraction

            return JacobianContraction().estimate(size)
        m = self._logits(size)
        parts = self.num_parts(size)
        logits = m * parts
        mult = size.num_outputs**2 if size.outputs == "full" else size.num_outputs
        n_feat = size.num_feature_examples
        flops = 0.0
        if self.sites:
            # One forward pass per part, one backward pass (activations only) per logit.
            flops += n_feat * size.forward_flops * (parts + logits)
        for site in self.sites:
            flops += self._site_costs(site, size, m, parts).flops
        if self.composite_size:
            flops += n_feat * 4.0 * logits * self.composite_size
            flops += 2.0 * size.num_pairs * mult * self.composite_size
        if self.fallback_size:
            flops += n_feat * size.forward_flops * 3 * logits
            flops += 2.0 * size.num_pairs * mult * self.fallback_size
        return CostEstimate(flops=flops, bytes_per_example=self._bytes_per_example(size, m))

    def _planned(self, fn: Callable[..., Any], params: Any, x: Any, spec: OutputSpec) -> Any:
        if self.analysis is not None:
            return self
        b = int(x.shape[0])
        size = ProblemSize(b, b, spec.num_outputs, 1, 0.0, 4, spec.outputs, True)
        return self.specialize(fn, params, x, size, memory_budget=math.inf)

    # --- features ----------------------------------------------------------------------------

    def features(
        self, fn: Callable[..., Any], params: Any, x: jax.Array, part: jax.Array, spec: OutputSpec
    ) -> dict[str, Any]:
        eng = self._planned(fn, params, x, spec)
        analysis = eng.analysis
        b, c = x.shape[0], spec.num_outputs
        m = eng._logits(spec)
        dtype = jax.eval_shape(fn, params, x[:1]).dtype
        index = part * m + jnp.arange(m)
        selection = jax.nn.one_hot(index, c, dtype=dtype)  # rows past C are zero
        leaves, treedef = jax.tree.flatten(params)
        explicit: list[jax.Array] = []
        outer: list[Outer] = []
        if analysis.sites:
            program = trace_program(fn, leaves, treedef, x)
            if (
                program.signature() != analysis.signature
                or len(program.shapes) != analysis.num_values
            ):
                raise ValueError(
                    f"fn traces to a different program at batch size {b} than at batch sizes "
                    "2 and 3; use implementation='jacobian' for this function"
                )
            cotangent = jnp.broadcast_to(selection[:, None, :], (m, b, c))
            recorded, grads = forward_and_cotangents(program, analysis, leaves, x, cotangent)
            composite_sites, composite_grads = [], []
            for site in analysis.sites:
                if method_of(site) != "operand":
                    e, o = tap_features(site, recorded, grads)
                    explicit.extend(e)
                    if o is not None:
                        outer.append(o)
                    continue
                per = operand_gradients(program, site, recorded, grads)
                if site.leaf is not None:
                    explicit.append(as_explicit(per))
                else:
                    composite_sites.append(site)
                    composite_grads.append(per)
            if composite_sites:
                explicit.append(
                    composite_features(program, analysis, leaves, composite_sites, composite_grads)
                )
        if analysis.fallback:
            explicit.append(fallback_features(fn, leaves, treedef, analysis.fallback, x, selection))
        small = [e for e in explicit if e.shape[0] == 1 and e.shape[2] * m <= SMALL_FEATURES]
        large = [e for e in explicit if not (e.shape[0] == 1 and e.shape[2] * m <= SMALL_FEATURES)]
        if small:
            large.append(jnp.concatenate(small, axis=2))
        return {"explicit": large, "outer": outer}

    # --- contraction -------------------------------------------------------------------------

    def contract(
        self,
        fn: Callable[..., Any],
        params: Any,
        f1: dict[str, Any],
        f2: dict[str, Any],
        part: jax.Array,
        spec: OutputSpec,
    ) -> jax.Array:
        outputs, c = spec.outputs, spec.num_outputs
        total: jax.Array | float = 0.0
        for e1, e2 in zip(f1["explicit"], f2["explicit"], strict=True):
            total = total + contract_explicit(e1, e2, outputs)
        for o1, o2 in zip(f1["outer"], f2["outer"], strict=True):
            total = total + contract_outer(o1, o2, outputs)
        b1 = batch_of(f1)
        b2 = batch_of(f2)
        m = num_logits(f1)
        shape = {"mean": (b1, b2), "diag": (m, b1, b2), "full": (b1, b2, c, c)}[outputs]
        gram = jnp.broadcast_to(jnp.asarray(total, dtype_of(f1)), shape)
        if outputs == "mean":
            return gram / c
        if outputs == "diag":
            parts = math.ceil(c / m)
            padded = jnp.zeros((parts * m, b1, b2), gram.dtype)
            zero = jnp.zeros_like(part)
            padded = jax.lax.dynamic_update_slice(padded, gram, (part * m, zero, zero))
            return padded[:c]
        return gram

    def self_blocks(
        self, fn: Callable[..., Any], params: Any, f: dict[str, Any], spec: OutputSpec
    ) -> jax.Array:
        """Per-example C x C blocks Theta(x_i, x_i) from features of the full kernel: (b, C, C)."""
        if spec.outputs != "full":
            raise ValueError("self_blocks needs the features of the full kernel")
        total: jax.Array | float = 0.0
        for e in f["explicit"]:
            total = total + jnp.einsum("xcyi,xdyi->icd", e, e, precision=HIGHEST)
        for o in f["outer"]:
            a = o.inputs[:, 0]
            aa = jnp.sum(a * a, axis=-1)
            g = o.cotangents[:, :, 0]
            total = total + aa[:, None, None] * jnp.einsum("cio,dio->icd", g, g, precision=HIGHEST)
        b, c = batch_of(f), spec.num_outputs
        return jnp.broadcast_to(jnp.asarray(total, dtype_of(f)), (b, c, c))
