"""Per-example features of the structured NTK engine's sites, composite and fallback leaves.

One forward pass of the program (`sdcomplex.ntk._program.evaluate`) records every site's
activation and parameter operand, with a zero perturbation added to every site's output; one
batched backward pass per logit (the cotangent e_c on every example: examples are independent)
gives each site's output cotangents as the cotangents of the perturbations. Then

* a direct dense or convolution site gives `sdcomplex.ntk._layers.layer_features`;
* an elementwise site, and any site of composite leaves, gives per-example gradients with
  respect to its operand: the vector-Jacobian product of the site's equation applied to one
  example (vmapped over examples and logits);
* composite leaves' per-example gradients are those operand gradients pulled back through the
  parameter-only part of the program;
* fallback leaves get explicit per-example Jacobians of the whole function.

Explicit features have the layout (p1, m, p2, b) of `sdcomplex.ntk._layers`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from sdcomplex.ntk._layers import Outer, layer_features
from sdcomplex.ntk._program import Equation, Program, bind, evaluate
from sdcomplex.ntk._site_match import Site
from sdcomplex.ntk._sites import Analysis


def recorded_values(analysis: Analysis) -> list[int]:
    """Values the forward pass records: activations, and operands of non-direct-tap sites."""
    values = []
    for s in analysis.sites:
        values.append(s.act)
        if s.tap is None or s.leaf is None:
            values.append(s.operand)
    return sorted(set(values))


def forward_and_cotangents(
    program: Program,
    analysis: Analysis,
    leaves: Sequence[Any],
    x: jax.Array,
    cotangent: jax.Array,
) -> tuple[dict[int, jax.Array], dict[int, jax.Array]]:
    """(recorded values, output cotangents (m, ...) per site output) for m logit cotangents.

    Args:
      cotangent: (m, b, C) cotangents of the logits.
    """
    b = x.shape[0]
    perturbations = {
        s.out: jnp.zeros(program.shapes[s.out], program.dtypes[s.out]) for s in analysis.sites
    }
    record = recorded_values(analysis)

    def forward(perturbations: dict[int, jax.Array]) -> Any:
        outs, rec = evaluate(program, leaves, x, perturbations=perturbations, record=record)
        return jnp.reshape(outs[0], (b, -1)), rec

    _, pullback, recorded = jax.vjp(forward, perturbations, has_aux=True)
    (grads,) = jax.vmap(pullback)(cotangent)
    return recorded, grads


def tap_features(
    site: Site, recorded: dict[int, jax.Array], grads: dict[int, jax.Array]
) -> tuple[list[jax.Array], Outer | None]:
    """`layer_features` of a direct dense or convolution site, in canonical layout.

    An input of another dtype than the site's output (integers, or float32 into a float64
    product) is cast to the output's: the site computes in that precision, and so do its
    features (integer features would truncate the kernel).
    """
    assert site.tap is not None
    a = jnp.transpose(recorded[site.act], site.act_perm)
    g = grads[site.out]
    if a.dtype != g.dtype:
        a = a.astype(g.dtype)
    g = jnp.transpose(g, (0, *(p + 1 for p in site.out_perm)))
    return layer_features(site.tap, a, g)


def _lifted(program: Program, site: Site) -> Equation | None:
    """The site's broadcast over examples, re-targeted to a single example."""
    if site.lift is None:
        return None
    eq = program.equations[site.lift]
    shape = list(eq.params["shape"])
    shape[site.out_axis] = 1
    return dataclasses.replace(eq, params={**eq.params, "shape": tuple(shape)})


def operand_gradients(
    program: Program, site: Site, recorded: dict[int, jax.Array], grads: dict[int, jax.Array]
) -> jax.Array:
    """(m, b, *operand shape): per-example, per-logit gradients w.r.t. the site's operand."""
    eq = program.equations[site.index]
    lift = _lifted(program, site)
    w = recorded[site.operand]
    ax, out_ax = site.example_axis, site.out_axis

    def one(a_i: jax.Array, g_i: jax.Array) -> jax.Array:
        a1 = jnp.expand_dims(a_i, ax)

        def apply(w: jax.Array) -> jax.Array:
            v = w if lift is None else bind(lift, [w])[0]
            ins: list[Any] = [None, None]
            ins[site.act_pos], ins[1 - site.act_pos] = a1, v
            return bind(eq, ins)[0]

        _, pull = jax.vjp(apply, w)
        return pull(jnp.expand_dims(g_i, out_ax).astype(w.dtype))[0]

    per_example = jax.vmap(one, in_axes=(ax, out_ax))
    return jax.vmap(per_example, in_axes=(None, 0))(recorded[site.act], grads[site.out])


def as_explicit(per: jax.Array) -> jax.Array:
    """(m, b, ...) per-example gradients to the explicit layout (1, m, p, b)."""
    m, b = per.shape[:2]
    return jnp.transpose(per.reshape(m, b, -1), (0, 2, 1))[None]


def composite_features(
    program: Program,
    analysis: Analysis,
    leaves: Sequence[Any],
    sites: Sequence[Site],
    operand_grads: Sequence[jax.Array],
) -> jax.Array:
    """(1, m, p, b) gradients of the composite leaves from their sites' operand gradients."""
    composite = analysis.composite
    operands = [s.operand for s in sites]

    def operand_values(chosen: list[jax.Array]) -> list[jax.Array]:
        full = list(leaves)
        for i, leaf in zip(composite, chosen, strict=True):
            full[i] = leaf
        _, rec = evaluate(program, full, None, record=operands, only=analysis.param_only)
        return [rec[v] for v in operands]

    _, pullback = jax.vjp(operand_values, [leaves[i] for i in composite])

    def pull(*cts: jax.Array) -> jax.Array:
        (grads,) = pullback(list(cts))
        return jnp.concatenate([g.reshape(-1) for g in grads])

    per = jax.vmap(jax.vmap(pull))(*operand_grads)  # (m, b, p)
    return jnp.transpose(per, (0, 2, 1))[None]


def fallback_features(
    fn: Callable[..., Any],
    leaves: Sequence[Any],
    treedef: Any,
    fallback: Sequence[int],
    x: jax.Array,
    selection: jax.Array,
) -> jax.Array:
    """Explicit per-example gradients (1, m, p, b) of the selected logits w.r.t. ``fallback``."""

    def one(xi: jax.Array) -> jax.Array:
        def logits(chosen: list[jax.Array]) -> jax.Array:
            full = list(leaves)
            for i, leaf in zip(fallback, chosen, strict=True):
                full[i] = leaf
            return fn(jax.tree.unflatten(treedef, full), xi[None]).reshape(-1)

        _, pullback = jax.vjp(logits, [leaves[i] for i in fallback])
        (grads,) = jax.vmap(pullback)(selection)
        return jnp.concatenate([g.reshape(selection.shape[0], -1) for g in grads], axis=1)

    per_example = jax.vmap(one, out_axes=-1)(x)  # (m, p, b)
    return per_example[None]
