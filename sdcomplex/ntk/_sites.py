"""Where a function's parameters meet its examples: the sites of the structured NTK engine.

`analyse` reads a `Program` (``sdcomplex.ntk._program``) traced at two batch sizes. A value
depends on the parameters, on the input, on both or on neither; the axis whose size follows
the batch size is its example axis. Every equation that combines a parameter-only value with
an input-dependent one is a boundary of the parameters. A boundary is a *site* when its
per-example Jacobian has a closed form:

* ``dot_general`` of an activation (example axis free, no batch dimensions) with a
  parameter-only operand: a dense layer, possibly with extra position axes;
* ``conv_general_dilated`` of an activation (its batch dimension the example axis) with a
  parameter-only kernel, without batch groups;
* ``add``, ``sub``, ``mul``, ``div`` of an activation with a parameter-only operand that
  broadcasts over the examples (biases, scales, inference-mode BatchNorm).

Each parameter leaf is then

* *direct*: reaching exactly one dot or convolution site (or elementwise site) through
  reshapes, transposes and dtype conversions used nowhere else; its Gram is built from the
  site's inputs and output cotangents (`sdcomplex.ntk._layers`);
* *composite*: reaching only sites, but through other parameter-only computations or at
  several sites (weight sharing, folded BatchNorm scales): per-example gradients at the sites
  are pulled back through those computations;
* *fallback*: used by any other boundary (``scan``, ``while``, opaque custom derivatives,
  gathers, ...) or returned directly: explicit per-example Jacobians of the whole function.

The result is exact for any function whose examples do not interact; `check_independent`
tests that by a perturbation of one example.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sdcomplex.ntk._layers import LayerTap
from sdcomplex.ntk._program import Literal, Program

VIEWS = ("reshape", "transpose", "convert_element_type", "copy", "copy_p", "squeeze")
"""Parameter-only operations that only rearrange a leaf (its Gram is unchanged); so does a
``broadcast_in_dim`` that only inserts axes of size 1."""

ELEMENTWISE = ("add", "add_any", "sub", "mul", "div")
"""Elementwise sites: an activation scaled or shifted by a parameter-only operand."""


class UnsupportedStructure(Exception):
    """The two traces differ in structure (no site can be trusted)."""


@dataclasses.dataclass(frozen=True)
class Site:
    """One boundary handled in closed form.

    Attributes:
      index: the equation's index in the program.
      kind: ``"dense"``, ``"conv"`` or ``"elementwise"``.
      act: the value number of the activation operand (recorded in the forward pass).
      act_pos: its operand position.
      operand: the parameter-only value the site differentiates (the weights, the scale).
      operand_pos: its operand position (of the lifted broadcast's operand when ``lift``).
      out: the site's output value (perturbed, to obtain output cotangents).
      example_axis: the activation's example axis.
      out_axis: the output's example axis.
      leaf: the parameter leaf for a direct site, else None.
      tap: canonical description of a dense or convolution site (with its method).
      act_perm: transpose of the activation to the canonical layout.
      out_perm: transpose of the output to the canonical layout.
      lift: index of a ``broadcast_in_dim`` equation that broadcast ``operand`` over the
        examples (re-applied with one example), or None.
      act_size, out_size, operand_size: numbers in one example's activation and output, and
        in the operand.
    """

    index: int
    kind: str
    act: int
    act_pos: int
    operand: int
    out: int
    example_axis: int
    out_axis: int
    leaf: int | None = None
    tap: LayerTap | None = None
    act_perm: tuple[int, ...] = ()
    out_perm: tuple[int, ...] = ()
    lift: int | None = None
    act_size: int = 0
    out_size: int = 0
    operand_size: int = 0


@dataclasses.dataclass(frozen=True)
class Analysis:
    """Sites and the partition of the parameter leaves (hashable).

    Attributes:
      sites: every site some non-fallback leaf reaches.
      composite: leaves pulled back through parameter-only computations.
      fallback: leaves with explicit per-example Jacobians.
      param_only: equations that do not depend on the input (run for the pull-back).
      signature: primitive names of the program, to check a re-trace against.
      num_values: number of values of the program.
    """

    sites: tuple[Site, ...]
    composite: tuple[int, ...]
    fallback: tuple[int, ...]
    param_only: tuple[int, ...]
    signature: tuple[str, ...] | None
    num_values: int = 0


def all_fallback(num_leaves: int) -> Analysis:
    """The analysis that treats every leaf by explicit Jacobians."""
    return Analysis((), (), tuple(range(num_leaves)), (), None)


def _shape(program: Program, atom: Any) -> tuple[int, ...]:
    if isinstance(atom, Literal):
        return tuple(np.shape(atom.value))
    return program.shapes[atom]


def _example_axes(p2: Program, p3: Program, atom: Any) -> tuple[int, ...] | None:
    """Axes whose size is 2 in the first trace and 3 in the second; None if another changes."""
    s2, s3 = _shape(p2, atom), _shape(p3, atom)
    if len(s2) != len(s3):
        return None
    axes = tuple(d for d, (a, b) in enumerate(zip(s2, s3, strict=True)) if a != b)
    if any((s2[d], s3[d]) != (2, 3) for d in axes):
        return None
    return axes


def _dependence(program: Program) -> tuple[list[bool], list[frozenset[int]]]:
    """Per value: whether it depends on the input; the parameter leaves it depends on."""
    n = len(program.shapes)
    on_input = [False] * n
    leaves: list[frozenset[int]] = [frozenset()] * n
    on_input[program.input_id] = True
    for i in range(program.num_leaves):
        leaves[i] = frozenset({i})
    for eq in program.equations:
        ins = [a for a in eq.ins if isinstance(a, int)]
        dep = any(on_input[a] for a in ins)
        used = frozenset().union(*(leaves[a] for a in ins)) if ins else frozenset()
        for v in eq.outs:
            on_input[v] = dep
            leaves[v] = used
    return on_input, leaves


def _dot_site(eq: Any, k: int, a_pos: int, ax: int, out_ax: int, p: Program) -> Site | None:
    (lc, rc), (lb, rb) = eq.params["dimension_numbers"]
    if lb or rb:
        return None
    a_contract = tuple(lc if a_pos == 0 else rc)
    w_contract = tuple(rc if a_pos == 0 else lc)
    a, w = eq.ins[a_pos], eq.ins[1 - a_pos]
    a_shape, w_shape = _shape(p, a), _shape(p, w)
    a_free = [d for d in range(len(a_shape)) if d not in a_contract]
    w_free = [d for d in range(len(w_shape)) if d not in w_contract]
    if ax not in a_free:
        return None
    a_off = 0 if a_pos == 0 else len(w_free)
    w_off = len(a_free) if a_pos == 0 else 0
    if out_ax != a_off + a_free.index(ax):
        return None
    rest = [d for d in a_free if d != ax]
    act_perm = (ax, *rest, *a_contract)
    out_perm = (
        out_ax,
        *(a_off + a_free.index(d) for d in rest),
        *range(w_off, w_off + len(w_free)),
    )
    positions = tuple(a_shape[d] for d in rest)
    k_size = math.prod(a_shape[d] for d in a_contract)
    o_size = math.prod(w_shape[d] for d in w_free)
    tap = LayerTap(
        path=("dot_general", str(k)),
        kind="dense",
        params=("kernel",),
        in_shape=(*positions, k_size),
        out_shape=(*positions, o_size),
    )
    return Site(
        k,
        "dense",
        a,
        a_pos,
        w,
        eq.outs[0],
        ax,
        out_ax,
        tap=tap,
        act_perm=act_perm,
        out_perm=out_perm,
    )


def _conv_site(eq: Any, k: int, ax: int, out_ax: int, p: Program) -> Site | None:
    params = eq.params
    numbers = params["dimension_numbers"]
    lhs_spec, rhs_spec, out_spec = numbers.lhs_spec, numbers.rhs_spec, numbers.out_spec
    if params["batch_group_count"] != 1 or lhs_spec[0] != ax or out_spec[0] != out_ax:
        return None
    a, w = eq.ins
    a_shape, w_shape = _shape(p, a), _shape(p, w)
    out_shape = p.shapes[eq.outs[0]]
    act_perm = (lhs_spec[0], *lhs_spec[2:], lhs_spec[1])
    out_perm = (out_spec[0], *out_spec[2:], out_spec[1])
    rank = len(lhs_spec) - 2
    lhs_dil = params.get("lhs_dilation") or (1,) * rank
    rhs_dil = params.get("rhs_dilation") or (1,) * rank
    tap = LayerTap(
        path=("conv_general_dilated", str(k)),
        kind="conv",
        params=("kernel",),
        in_shape=tuple(a_shape[d] for d in act_perm[1:]),
        out_shape=tuple(out_shape[d] for d in out_perm[1:]),
        kernel_size=tuple(w_shape[d] for d in rhs_spec[2:]),
        strides=tuple(int(s) for s in params["window_strides"]),
        padding=tuple((int(lo), int(hi)) for lo, hi in params["padding"]),
        input_dilation=tuple(int(d) for d in lhs_dil),
        kernel_dilation=tuple(int(d) for d in rhs_dil),
        groups=int(params["feature_group_count"]),
    )
    return Site(
        k, "conv", a, 0, w, eq.outs[0], ax, out_ax, tap=tap, act_perm=act_perm, out_perm=out_perm
    )


def _elementwise_site(
    eq: Any,
    k: int,
    a_pos: int,
    ax: int,
    out_ax: int,
    p2: Program,
    p3: Program,
    producer: dict[int, int],
) -> Site | None:
    if ax != out_ax:
        return None
    a, v = eq.ins[a_pos], eq.ins[1 - a_pos]
    v_axes = _example_axes(p2, p3, v)
    v_shape = _shape(p2, v)
    lift = None
    if v_axes == (ax,) and v in producer:
        src = p2.equations[producer[v]]
        if src.name != "broadcast_in_dim" or not isinstance(src.ins[0], int):
            return None
        if _example_axes(p2, p3, src.ins[0]) != ():
            return None
        lift, v = producer[v], src.ins[0]
    elif v_axes != () or (len(v_shape) and (len(v_shape) <= ax or v_shape[ax] != 1)):
        return None
    return Site(k, "elementwise", a, a_pos, v, eq.outs[0], ax, out_ax, lift=lift)


def _match(
    eq: Any, k: int, p2: Program, p3: Program, on_input: list[bool], producer: dict[int, int]
) -> Site | None:
    """The site of a boundary equation, or None."""
    if len(eq.ins) != 2 or len(eq.outs) != 1:
        return None
    kinds = [isinstance(a, int) and on_input[a] for a in eq.ins]
    if kinds.count(True) != 1:
        return None
    a_pos = kinds.index(True)
    a_axes = _example_axes(p2, p3, eq.ins[a_pos])
    out_axes = _example_axes(p2, p3, eq.outs[0])
    if a_axes is None or out_axes is None or len(a_axes) != 1 or len(out_axes) != 1:
        return None
    ax, out_ax = a_axes[0], out_axes[0]
    if eq.name == "dot_general":
        return _dot_site(eq, k, a_pos, ax, out_ax, p2)
    if eq.name == "conv_general_dilated" and a_pos == 0:
        return _conv_site(eq, k, ax, out_ax, p2)
    if eq.name in ELEMENTWISE and eq.ins[1 - a_pos] is not None:
        return _elementwise_site(eq, k, a_pos, ax, out_ax, p2, p3, producer)
    return None


def _direct_leaf(site: Site, p: Program, producer: dict[int, int], uses: list[int]) -> int | None:
    """The leaf a site's operand is a pure rearrangement of, if nothing else uses it."""
    v = site.operand
    if uses[v] != 1 or (site.lift is not None and uses[p.equations[site.lift].outs[0]] != 1):
        return None
    while v >= p.num_leaves:
        if v not in producer:
            return None
        eq = p.equations[producer[v]]
        src = eq.ins[0]
        if len(eq.ins) != 1 or not isinstance(src, int) or uses[src] != 1:
            return None
        inserts = eq.name == "broadcast_in_dim" and math.prod(p.shapes[src]) == math.prod(
            p.shapes[v]
        )  # only inserts axes of size 1
        if eq.name not in VIEWS and not inserts:
            return None
        if eq.name == "convert_element_type" and not jnp.issubdtype(p.dtypes[src], jnp.inexact):
            return None
        v = src
    return v


def analyse(p2: Program, p3: Program) -> Analysis:
    """Sites and leaf partition from traces at batch sizes 2 and 3 (see the module docstring).

    Raises:
      UnsupportedStructure: if the two traces are not the same program.
    """
    if p2.signature() != p3.signature() or len(p2.shapes) != len(p3.shapes):
        raise UnsupportedStructure("the traces at batch sizes 2 and 3 differ")
    on_input, leafsets = _dependence(p2)
    producer = {v: k for k, eq in enumerate(p2.equations) for v in eq.outs}
    uses = [0] * len(p2.shapes)
    for eq in p2.equations:
        for a in eq.ins:
            if isinstance(a, int):
                uses[a] += 1
    for a in p2.outputs:
        if isinstance(a, int):
            uses[a] += 1
    in_group = {k: g for g in p2.groups for k in range(g.start, g.stop)}
    fallback: set[int] = set()
    sites: list[Site] = []
    for k, eq in enumerate(p2.equations):
        ints = [a for a in eq.ins if isinstance(a, int)]
        if not any(on_input[a] for a in ints):
            continue
        params_in = [a for a in ints if not on_input[a] and leafsets[a]]
        if not params_in:
            continue
        site = _match(eq, k, p2, p3, on_input, producer)
        group = in_group.get(k)
        if site is not None and group is not None and site.out not in group.call.outs:
            site = None  # inside a custom-derivative call, its output cannot be perturbed
        if site is None:
            fallback.update(*(leafsets[a] for a in params_in))
        else:
            sites.append(site)
    for a in p2.outputs:
        if isinstance(a, int) and not on_input[a]:
            fallback.update(leafsets[a])
    direct: dict[int, int] = {}
    for i, site in enumerate(sites):
        leaf = _direct_leaf(site, p2, producer, uses)
        if leaf is not None and leaf not in fallback and uses[leaf] == 1:
            direct[i] = leaf
    direct_leaves = set(direct.values())
    reached = set().union(*(leafsets[s.operand] for s in sites)) if sites else set()
    composite = reached - fallback - direct_leaves
    kept = []
    for i, site in enumerate(sites):
        site = dataclasses.replace(
            site,
            act_size=math.prod(p2.shapes[site.act]) // 2,
            out_size=math.prod(p2.shapes[site.out]) // 2,
            operand_size=math.prod(_shape(p2, site.operand)),
        )
        if i in direct:
            kept.append(dataclasses.replace(site, leaf=direct[i]))
        elif leafsets[site.operand] & composite:
            kept.append(site)
    param_only = tuple(
        k
        for k, eq in enumerate(p2.equations)
        if not any(isinstance(a, int) and on_input[a] for a in eq.ins)
    )
    return Analysis(
        sites=tuple(kept),
        composite=tuple(sorted(composite)),
        fallback=tuple(sorted(fallback)),
        param_only=param_only,
        signature=p2.signature(),
        num_values=len(p2.shapes),
    )


def check_independent(fn: Callable[..., Any], params: Any, x: Any) -> None:
    """Raises ValueError if an example's logits depend on another example.

    One forward-mode pass perturbs the first of two examples (a random tangent; the first
    example is repeated when ``x`` has one) and checks that the other example's logits stay
    exactly unperturbed. This catches BatchNorm with batch statistics, means over the batch
    and every other coupling that reaches the logits at this point.
    """
    x = np.asarray(x)
    if x.shape[0] < 2:
        x = np.concatenate([x, x], axis=0)
    x = jnp.asarray(x[:2])
    rng = np.random.default_rng(0)
    tangent = np.zeros(x.shape, x.dtype)
    tangent[0] = rng.standard_normal(x.shape[1:])
    _, t_logits = jax.jvp(lambda x: fn(params, x), (x,), (jnp.asarray(tangent),))
    if not np.all(np.asarray(t_logits)[1:] == 0):
        raise ValueError(
            "examples interact: perturbing one example changes another example's logits "
            "(e.g. BatchNorm with batch statistics, or a mean over the batch); the "
            "empirical NTK needs fn(params, x) to treat examples independently (BatchNorm "
            "in inference mode)"
        )
