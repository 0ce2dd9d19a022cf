"""Layer-structured empirical NTK for Flax models (``implementation="structured"``).

The Gram is a sum over layers. For each Dense, Conv and inference-mode BatchNorm layer (see
`sdcomplex.ntk._layers`) it is assembled from the layer's inputs and output cotangents:

* one forward pass records every tapped layer's input, and a zero perturbation added to each
  tapped layer's output turns one batched backward pass per logit (cotangent e_c on every
  example; examples are independent) into every example's output cotangents g_l;
* a dense layer (one position) contributes (A A^T + [bias]) * (G_c G_d^T): no P-sized vector
  is formed ("outer" method). With S positions (extra input axes, or convolution patches) the
  same form sums over position pairs, S^2 times the work;
* otherwise per-example weight gradients are formed explicitly (patches^T @ g as one batched
  matrix multiply for all logits at once) and contracted by a matrix multiply ("explicit").

For each layer the planner picks the cheaper method by a floating-point-operation estimate
(`specialize`). Trainable parameters outside tapped layers (other module types, shared
modules, a subset chosen by ``param_filter``) get explicit per-example Jacobians, so the result
is exact for every `FlaxNTKFunction`. Examples must not interact (BatchNorm in inference mode).

The Gram is summed over parts of ``logits_per_part`` logits (mean and diag kernels; all logits
at once when that fits the memory budget, as it does for 10 classes); the full kernel uses one
part. Every contraction runs at ``Precision.HIGHEST``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import traverse_util

from sdcomplex.ntk._contract import HIGHEST
from sdcomplex.ntk._engine import CostEstimate, OutputSpec, ProblemSize
from sdcomplex.ntk._layers import (
    LayerTap,
    Outer,
    Path,
    discover_taps,
    flax_function,
    layer_features,
    tapped_forward,
)

SMALL_FEATURES = 1 << 16
"""Explicit features with at most this many numbers per example are concatenated into one."""

MIN_BLOCK = 128
"""Logits per part are reduced until a block of this many examples fits the memory budget."""


def _split(params: Any, paths: tuple[Path, ...]) -> tuple[dict[Any, Any], dict[Any, Any]]:
    flat = traverse_util.flatten_dict(params)
    chosen = {k: v for k, v in flat.items() if tuple(str(p) for p in k) in set(paths)}
    rest = {k: v for k, v in flat.items() if k not in chosen}
    return chosen, rest


def _merge(chosen: dict[Any, Any], rest: dict[Any, Any]) -> Any:
    return traverse_util.unflatten_dict({**rest, **chosen})


@dataclasses.dataclass(frozen=True)
class _Costs:
    flops: float
    stored: float  # numbers per example kept for the whole block (the features)
    transient: float  # numbers per example alive only while the features are computed


def _tap_costs(tap: LayerTap, size: ProblemSize, m: int, parts: int) -> tuple[_Costs, _Costs]:
    """(explicit, outer) costs of one layer; outer is infinite where it does not apply."""
    c = size.num_outputs
    logits = parts * m  # cotangents computed, padding included
    mult = c * c if size.outputs == "full" else c
    pairs, n_feat = size.num_pairs, size.num_feature_examples
    s, k, o, g = tap.positions, tap.fan_in, tap.num_features, tap.groups
    weights = tap.kernel_size_params if ("kernel" in tap.params or "scale" in tap.params) else 0
    bias = o if "bias" in tap.params else 0
    patches = s * k * g if tap.kind == "conv" else 0
    # Explicit: per-example gradients (2 S flops per weight and logit), then the contraction.
    explicit = _Costs(
        flops=n_feat * (2.0 * s * logits * (weights + bias) + parts * patches)
        + 2.0 * pairs * mult * (weights + bias),
        stored=m * (weights + bias),
        transient=patches,
    )
    outer_ok = tap.outer_allowed and (
        s == 1 or (size.outputs != "full" and s <= StructuredNTK.max_outer_positions)
    )
    if not outer_ok:
        return explicit, _Costs(math.inf, math.inf, math.inf)
    grams = 2.0 * pairs * s * s * (parts * k + mult * o) + pairs * s * s * mult
    bias_explicit = 0 if s == 1 else bias
    outer = _Costs(
        flops=n_feat * parts * patches
        + grams
        + n_feat * 2.0 * s * logits * bias_explicit
        + 2.0 * pairs * mult * bias_explicit,
        stored=s * k + m * s * o + m * bias_explicit,
        transient=patches,
    )
    return explicit, outer


@dataclasses.dataclass(frozen=True)
class StructuredNTK:
    """Layer-structured NTK of a `FlaxNTKFunction` (see the module docstring).

    `specialize` (called by `plan_ntk`) traces the model, picks each layer's method by cost and
    the logits per part by memory; the unspecialised object does the same at trace time with
    the block as the problem size.

    Attributes:
      taps: the tapped layers with their methods (None until specialised).
      uncovered: trainable parameter paths handled by explicit Jacobians.
      uncovered_size: number of parameters in ``uncovered``.
      logits_per_part: logits per part for the mean and diag kernels (None: all).
    """

    name: str = "structured"
    taps: tuple[LayerTap, ...] | None = None
    uncovered: tuple[Path, ...] = ()
    uncovered_size: int = 0
    logits_per_part: int | None = None

    max_outer_positions = 4
    """Largest S for which the outer form (memory b1*b2*S^2 per block pair) is considered."""

    def supports(self, fn: Callable[..., Any]) -> bool:
        return flax_function(fn) is not None

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
        """A copy planned for this model and problem: layer methods and logits per part."""
        taps, uncovered = discover_taps(fn, params, tuple(x.shape[1:]), x.dtype)
        flat = traverse_util.flatten_dict(params)
        uncovered_size = sum(
            math.prod(jnp.shape(v)) for k, v in flat.items() if tuple(map(str, k)) in uncovered
        )
        base = dataclasses.replace(
            self, taps=taps, uncovered=uncovered, uncovered_size=int(uncovered_size)
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
        assert self.taps is not None
        parts = 1 if size.outputs == "full" else math.ceil(size.num_outputs / m)
        taps = []
        for tap in self.taps:
            explicit, outer = _tap_costs(tap, size, m, parts)
            taps.append(tap.with_method("outer" if outer.flops < explicit.flops else "explicit"))
        return dataclasses.replace(self, taps=tuple(taps), logits_per_part=m)

    def _logits(self, size: ProblemSize | OutputSpec) -> int:
        c = size.num_outputs
        if size.outputs == "full" or self.logits_per_part is None:
            return c
        return min(self.logits_per_part, c)

    def num_parts(self, size: ProblemSize) -> int:
        return math.ceil(size.num_outputs / self._logits(size))

    def _bytes_per_example(self, size: ProblemSize, m: int) -> float:
        """Feature bytes per example for the block-size rule "two blocks fit the budget".

        Features are kept for two blocks, while the forward activations, the output cotangents
        and the patches exist for one block at a time: they count half.
        """
        assert self.taps is not None
        parts = math.ceil(size.num_outputs / m)
        stored = 2.0 * m * self.uncovered_size
        transient = 0.0
        largest = 0.0
        for tap in self.taps:
            explicit, outer = _tap_costs(tap, size, m, parts)
            chosen = outer if tap.method == "outer" else explicit
            stored += chosen.stored
            largest = max(largest, chosen.transient)
            # Forward residuals (about twice the tapped layers' inputs and outputs, for the
            # activations and pooling between them) and the cotangents of m logits.
            transient += 2 * (math.prod(tap.in_shape) + math.prod(tap.out_shape))
            transient += m * math.prod(tap.out_shape)
        return (stored + (transient + largest) / 2) * size.itemsize

    def estimate(self, size: ProblemSize) -> CostEstimate:
        if self.taps is None:
            # Not planned (plan_ntk always plans): as expensive as the Jacobian contraction.
            from sdcomplex.ntk._jacobian import JacobianContraction

            return JacobianContraction().estimate(size)
        m = self._logits(size)
        parts = self.num_parts(size)
        logits = m * parts
        mult = size.num_outputs**2 if size.outputs == "full" else size.num_outputs
        n_feat = size.num_feature_examples
        # One forward pass per part, one backward pass (activations only) per logit.
        flops = n_feat * size.forward_flops * (parts + logits)
        for tap in self.taps:
            explicit, outer = _tap_costs(tap, size, m, parts)
            flops += (outer if tap.method == "outer" else explicit).flops
        if self.uncovered_size:
            flops += n_feat * size.forward_flops * 3 * logits
            flops += 2.0 * size.num_pairs * mult * self.uncovered_size
        return CostEstimate(flops=flops, bytes_per_example=self._bytes_per_example(size, m))

    def _planned(self, fn: Callable[..., Any], params: Any, x: Any, spec: OutputSpec) -> Any:
        if self.taps is not None:
            return self
        b = int(x.shape[0])
        size = ProblemSize(b, b, spec.num_outputs, 1, 0.0, 4, spec.outputs, True)
        return self.specialize(fn, params, x, size, memory_budget=math.inf)

    # --- features ----------------------------------------------------------------------------

    def features(
        self, fn: Callable[..., Any], params: Any, x: jax.Array, part: jax.Array, spec: OutputSpec
    ) -> dict[str, Any]:
        eng = self._planned(fn, params, x, spec)
        taps = eng.taps
        b, c = x.shape[0], spec.num_outputs
        m = eng._logits(spec)
        dtype = jax.eval_shape(fn, params, x[:1]).dtype
        index = part * m + jnp.arange(m)
        selection = jax.nn.one_hot(index, c, dtype=dtype)  # rows past C are zero
        cotangent = jnp.broadcast_to(selection[:, None, :], (m, b, c))
        perturbations = {tap.path: jnp.zeros((b, *tap.out_shape), dtype) for tap in taps}

        def forward(perturbations: dict[Path, jax.Array]) -> Any:
            return tapped_forward(fn, params, x, taps, perturbations)

        _, pullback, recorded = jax.vjp(forward, perturbations, has_aux=True)
        (grads,) = jax.vmap(pullback)(cotangent)
        explicit: list[jax.Array] = []
        outer: list[Outer] = []
        for tap in taps:
            e, o = layer_features(tap, recorded[tap.path], grads[tap.path])
            explicit.extend(e)
            if o is not None:
                outer.append(o)
        if eng.uncovered:
            explicit.append(_uncovered_features(fn, params, x, eng.uncovered, selection))
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
        b1 = _batch(f1)
        b2 = _batch(f2)
        m = _num_logits(f1)
        shape = {"mean": (b1, b2), "diag": (m, b1, b2), "full": (b1, b2, c, c)}[outputs]
        gram = jnp.broadcast_to(jnp.asarray(total, _dtype(f1)), shape)
        if outputs == "mean":
            return gram / c
        if outputs == "diag":
            parts = math.ceil(c / m)
            padded = jnp.zeros((parts * m, b1, b2), gram.dtype)
            padded = jax.lax.dynamic_update_slice(padded, gram, (part * m, 0, 0))
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
            aa = jnp.sum(a * a, axis=-1) + (1.0 if o.bias else 0.0)
            g = o.cotangents[:, :, 0]
            total = total + aa[:, None, None] * jnp.einsum("cio,dio->icd", g, g, precision=HIGHEST)
        b, c = _batch(f), spec.num_outputs
        return jnp.broadcast_to(jnp.asarray(total, _dtype(f)), (b, c, c))


def _batch(f: dict[str, Any]) -> int:
    if f["explicit"]:
        return int(f["explicit"][0].shape[-1])
    return int(f["outer"][0].inputs.shape[0])


def _num_logits(f: dict[str, Any]) -> int:
    if f["explicit"]:
        return int(f["explicit"][0].shape[1])
    return int(f["outer"][0].cotangents.shape[0])


def _dtype(f: dict[str, Any]) -> Any:
    leaves = jax.tree.leaves(f)
    return leaves[0].dtype


def contract_explicit(e1: jax.Array, e2: jax.Array, outputs: str) -> jax.Array:
    """Gram of explicit per-example gradients (p1, m, p2, b); mean is summed, not averaged."""
    if outputs == "mean":
        a = e1.reshape(-1, e1.shape[-1])
        b = e2.reshape(-1, e2.shape[-1])
        return jax.lax.dot_general(a, b, (((0,), (0,)), ((), ())), precision=HIGHEST)
    if outputs == "diag":
        return jnp.einsum("xcyi,xcyj->cij", e1, e2, precision=HIGHEST)
    return jnp.einsum("xcyi,xdyj->ijcd", e1, e2, precision=HIGHEST)


def contract_outer(o1: Outer, o2: Outer, outputs: str) -> jax.Array:
    """Gram of a layer from its input and cotangent Grams (mean is summed, not averaged)."""
    s = o1.inputs.shape[1]
    if s == 1:
        a1, a2 = o1.inputs[:, 0], o2.inputs[:, 0]
        g1, g2 = o1.cotangents[:, :, 0], o2.cotangents[:, :, 0]
        aa = jnp.matmul(a1, a2.T, precision=HIGHEST) + (1.0 if o1.bias else 0.0)
        if outputs == "mean":
            return aa * jnp.einsum("cio,cjo->ij", g1, g2, precision=HIGHEST)
        if outputs == "diag":
            return aa[None] * jnp.einsum("cio,cjo->cij", g1, g2, precision=HIGHEST)
        return aa[:, :, None, None] * jnp.einsum("cio,djo->ijcd", g1, g2, precision=HIGHEST)
    aa = jnp.einsum("isk,jtk->ijst", o1.inputs, o2.inputs, precision=HIGHEST)
    if outputs == "mean":
        gg = jnp.einsum("cisO,cjtO->ijst", o1.cotangents, o2.cotangents, precision=HIGHEST)
        return jnp.sum(aa * gg, axis=(2, 3))
    if outputs == "diag":
        gg = jnp.einsum("cisO,cjtO->cijst", o1.cotangents, o2.cotangents, precision=HIGHEST)
        return jnp.einsum("ijst,cijst->cij", aa, gg, precision=HIGHEST)
    raise ValueError("the outer form with several positions is not used for the full kernel")


def _uncovered_features(
    fn: Callable[..., Any],
    params: Any,
    x: jax.Array,
    paths: tuple[Path, ...],
    selection: jax.Array,
) -> jax.Array:
    """Explicit per-example gradients (1, m, p, b) of the selected logits w.r.t. ``paths``."""
    chosen, rest = _split(params, paths)

    def one(xi: jax.Array) -> jax.Array:
        def logits(q: dict[Any, Any]) -> jax.Array:
            return fn(_merge(q, rest), xi[None]).reshape(-1)

        _, pullback = jax.vjp(logits, chosen)
        (grads,) = jax.vmap(pullback)(selection)
        leaves = jax.tree.leaves(grads)
        return jnp.concatenate([leaf.reshape(selection.shape[0], -1) for leaf in leaves], axis=1)

    per_example = jax.vmap(one, out_axes=-1)(x)  # (m, p, b)
    return per_example[None]
