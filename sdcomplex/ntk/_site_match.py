"""The boundaries of a function's parameters that have a closed-form per-example Jacobian.

`match_site` recognises one equation of a `Program` (``sdcomplex.ntk._program``) that combines a
parameter-only value with an input-dependent one (see `sdcomplex.ntk._sites`) as a `Site`:

* ``dot_general`` of an activation (example axis free, no batch dimensions) with a
  parameter-only operand: a dense layer, possibly with extra position axes;
* ``conv_general_dilated`` of an activation (its batch dimension the example axis) with a
  parameter-only kernel, without batch groups;
* ``add``, ``sub``, ``mul``, ``div`` of an activation with a parameter-only operand that
  broadcasts over the examples (biases, scales, inference-mode BatchNorm).

Dense and convolution sites carry a `LayerTap`: the transposes of the activation and the output
to the canonical layout (example axis first, features last) and the layer's configuration.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from sdcomplex.ntk._layers import LayerTap
from sdcomplex.ntk._program import Literal, Program

ELEMENTWISE = ("add", "add_any", "sub", "mul", "div")
"""Elementwise sites: an activation scaled or shifted by a parameter-only operand."""


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


def shape_of(program: Program, atom: Any) -> tuple[int, ...]:
    if isinstance(atom, Literal):
        return tuple(np.shape(atom.value))
    return program.shapes[atom]


def example_axes(p2: Program, p3: Program, atom: Any) -> tuple[int, ...] | None:
    """Axes whose size is 2 in the first trace and 3 in the second; None if another changes."""
    s2, s3 = shape_of(p2, atom), shape_of(p3, atom)
    if len(s2) != len(s3):
        return None
    axes = tuple(d for d, (a, b) in enumerate(zip(s2, s3, strict=True)) if a != b)
    if any((s2[d], s3[d]) != (2, 3) for d in axes):
        return None
    return axes


def _dot_site(eq: Any, k: int, a_pos: int, ax: int, out_ax: int, p: Program) -> Site | None:
    (lc, rc), (lb, rb) = eq.params["dimension_numbers"]
    if lb or rb:
        return None
    a_contract = tuple(lc if a_pos == 0 else rc)
    w_contract = tuple(rc if a_pos == 0 else lc)
    a, w = eq.ins[a_pos], eq.ins[1 - a_pos]
    a_shape, w_shape = shape_of(p, a), shape_of(p, w)
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
    a_shape, w_shape = shape_of(p, a), shape_of(p, w)
    out_shape = p.shapes[eq.outs[0]]
    act_perm = (lhs_spec[0], *lhs_spec[2:], lhs_spec[1])
    out_perm = (out_spec[0], *out_spec[2:], out_spec[1])
    rank = len(lhs_spec) - 2
    lhs_dil = params.get("lhs_dilation") or (1,) * rank
    rhs_dil = params.get("rhs_dilation") or (1,) * rank
    tap = LayerTap(
        path=("conv_general_dilated", str(k)),
        kind="conv",
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
    v_axes = example_axes(p2, p3, v)
    v_shape = shape_of(p2, v)
    lift = None
    if v_axes == (ax,) and v in producer:
        src = p2.equations[producer[v]]
        if src.name != "broadcast_in_dim" or not isinstance(src.ins[0], int):
            return None
        if example_axes(p2, p3, src.ins[0]) != ():
            return None
        lift, v = producer[v], src.ins[0]
    elif v_axes != () or (len(v_shape) and (len(v_shape) <= ax or v_shape[ax] != 1)):
        return None
    return Site(k, "elementwise", a, a_pos, v, eq.outs[0], ax, out_ax, lift=lift)


def match_site(
    eq: Any, k: int, p2: Program, p3: Program, on_input: list[bool], producer: dict[int, int]
) -> Site | None:
    """The site of a boundary equation, or None."""
    if len(eq.ins) != 2 or len(eq.outs) != 1:
        return None
    kinds = [isinstance(a, int) and on_input[a] for a in eq.ins]
    if kinds.count(True) != 1:
        return None
    a_pos = kinds.index(True)
    a_axes = example_axes(p2, p3, eq.ins[a_pos])
    out_axes = example_axes(p2, p3, eq.outs[0])
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
