"""Cost model of the structured NTK engine's sites: floating-point operations and memory.

For a dense or convolution site with S positions, fan-in K, O output features, P = K O weights,
m logits per part and n feature examples (pairs: the number of example pairs contracted):

* explicit per-example weight gradients cost n (2 S m P + patches) plus the contraction
  2 pairs C P (C^2 P for the full kernel) and store m P numbers per example;
* the outer form (input and cotangent Grams) costs 2 pairs S^2 (K + C O) and stores
  S K + m S O numbers per example; it is considered for S = 1, or S <= `MAX_OUTER_POSITIONS`
  for the mean and diag kernels.

Elementwise and composite sites cost their vector-Jacobian products, 2 m times the site's output
size per example.
"""

from __future__ import annotations

import dataclasses
import math

from sdcomplex.ntk._engine import ProblemSize
from sdcomplex.ntk._layers import LayerTap
from sdcomplex.ntk._site_match import Site

MAX_OUTER_POSITIONS = 4
"""Largest S for which the outer form (memory b1*b2*S^2 per block pair) is considered."""


@dataclasses.dataclass(frozen=True)
class Costs:
    """Estimated work and memory of one site's features."""

    flops: float
    stored: float  # numbers per example kept for the whole block (the features)
    transient: float  # numbers per example alive only while the features are computed


def tap_costs(tap: LayerTap, size: ProblemSize, m: int, parts: int) -> tuple[Costs, Costs]:
    """(explicit, outer) costs of a dense or convolution site (outer: inf where not allowed)."""
    c = size.num_outputs
    logits = parts * m  # cotangents computed, padding included
    mult = c * c if size.outputs == "full" else c
    pairs, n_feat = size.num_pairs, size.num_feature_examples
    s, k, o, g = tap.positions, tap.fan_in, tap.num_features, tap.groups
    weights = tap.kernel_size_params
    patches = s * k * g if tap.kind == "conv" else 0
    # Explicit: per-example gradients (2 S flops per weight and logit), then the contraction.
    explicit = Costs(
        flops=n_feat * (2.0 * s * logits * weights + parts * patches)
        + 2.0 * pairs * mult * weights,
        stored=m * weights,
        transient=patches,
    )
    outer_ok = tap.outer_allowed and (
        s == 1 or (size.outputs != "full" and s <= MAX_OUTER_POSITIONS)
    )
    if not outer_ok:
        return explicit, Costs(math.inf, math.inf, math.inf)
    grams = 2.0 * pairs * s * s * (parts * k + mult * o) + pairs * s * s * mult
    outer = Costs(
        flops=n_feat * parts * patches + grams,
        stored=s * k + m * s * o,
        transient=patches,
    )
    return explicit, outer


def operand_costs(site: Site, size: ProblemSize, m: int, parts: int) -> Costs:
    """Per-example operand gradients of an elementwise or composite site, and their Gram."""
    logits = parts * m
    mult = size.num_outputs**2 if size.outputs == "full" else size.num_outputs
    work = site.tap.positions * site.tap.kernel_size_params if site.tap else site.out_size
    direct = site.leaf is not None
    contraction = 2.0 * size.num_pairs * mult * site.operand_size if direct else 0.0
    return Costs(
        flops=size.num_feature_examples * 2.0 * logits * work + contraction,
        stored=m * site.operand_size,
        transient=m * site.out_size,
    )


def method_of(site: Site) -> str:
    """``"outer"`` or ``"explicit"`` for a direct dense or convolution site, else ``"operand"``."""
    return site.tap.method if (site.tap is not None and site.leaf is not None) else "operand"
