"""A function's jaxpr as a flat program the structured NTK engine can analyse and re-run.

`trace_program` traces ``fn(params, x)`` with ``jax.make_jaxpr`` and inlines the nested jaxprs
whose semantics are plain evaluation: ``jit``, ``closed_call``, ``remat`` (``jax.checkpoint``:
rematerialisation changes memory, not values), a ``cond`` whose branch is fixed when the
program is lowered (``lax.platform_dependent``), and a ``custom_jvp_call`` that a parameter
enters directly (e.g. `sdcomplex.models.patch_conv`). Such a call is also kept as a `Group`:
`evaluate` computes its outputs by the call itself (so that backward passes use its custom
rule) and its inlined equations only for the values they record; the sites inside it are
differentiated by their primal maths, which is right where the custom rule is the derivative of
the primal computation (as it is for ``patch_conv``; `sdcomplex.ntk._custom_rules` checks it
when planning). Every other equation (``scan``, ``while``,
other ``cond``s and custom derivatives, any primitive) stays one opaque step, evaluated by
binding its primitive.

Values are numbered: ``0 .. num_leaves - 1`` are the parameter leaves, ``num_leaves`` is the
input batch, then the captured constants, then every equation's outputs in order. Only public
APIs are used (``jax.make_jaxpr``, ``jax.extend.core``, ``Primitive.bind``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.extend.core as jex
import jax.numpy as jnp
import numpy as np

from sdcomplex.ntk._engine import combine_callable, partition_callable
from sdcomplex.ntk._window_max import is_disjoint_window_max, window_max

INLINED_CALLS = ("jit", "pjit", "closed_call", "core_call", "remat", "remat2", "checkpoint")
"""Primitives whose nested jaxpr is evaluated as is (inlined)."""


@dataclasses.dataclass(frozen=True)
class Literal:
    """A constant written into the program (a jaxpr literal)."""

    value: Any


Atom = int | Literal


@dataclasses.dataclass(frozen=True, eq=False)
class Group:
    """A custom-derivative call inlined as equations ``start .. stop - 1``.

    Attributes:
      call: the call itself (its ``outs`` are the inlined equations' output values).
      start, stop: the range of inlined equations.
    """

    call: Any
    start: int
    stop: int


@dataclasses.dataclass(frozen=True, eq=False)
class Equation:
    """One primitive application: ``outs = primitive.bind(*ins, **params)``."""

    primitive: Any
    params: Mapping[str, Any]
    ins: tuple[Atom, ...]
    outs: tuple[int, ...]

    @property
    def name(self) -> str:
        """The primitive's name."""
        return str(self.primitive.name)


@dataclasses.dataclass(frozen=True, eq=False)
class Program:
    """A flat program (see the module docstring for the numbering of values).

    Attributes:
      num_leaves: number of parameter leaves (values ``0 .. num_leaves - 1``).
      consts: captured constants, values ``num_leaves + 1 ..``.
      equations: the equations in evaluation order.
      outputs: the atoms of the function's outputs.
      shapes: shape of every numbered value.
      dtypes: dtype of every numbered value.
      groups: custom-derivative calls evaluated as a whole (see `Group`).
    """

    num_leaves: int
    consts: tuple[Any, ...]
    equations: tuple[Equation, ...]
    outputs: tuple[Atom, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[Any, ...]
    groups: tuple[Group, ...] = ()

    @property
    def input_id(self) -> int:
        """The number of the input batch."""
        return self.num_leaves

    def signature(self) -> tuple[str, ...]:
        """The sequence of primitive names (equal for traces of the same structure)."""
        return tuple(eq.name for eq in self.equations)


class _Builder:
    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []
        self.dtypes: list[Any] = []
        self.equations: list[Equation] = []
        self.param_dependent: list[bool] = []
        self.platform: dict[int, Mapping[str, Any]] = {}
        self.groups: list[Group] = []
        self.in_group = False

    def new(self, aval: Any, param_dependent: bool) -> int:
        self.shapes.append(tuple(int(d) for d in aval.shape))
        self.dtypes.append(aval.dtype)
        self.param_dependent.append(param_dependent)
        return len(self.shapes) - 1

    def depends(self, atoms: Sequence[Atom]) -> bool:
        return any(isinstance(a, int) and self.param_dependent[a] for a in atoms)

    def inline(self, jaxpr: Any, consts: Sequence[Atom], args: Sequence[Atom]) -> list[Atom]:
        env: dict[Any, Atom] = {}
        for var, value in zip(jaxpr.constvars, consts, strict=True):
            env[var] = value
        for var, value in zip(jaxpr.invars, args, strict=True):
            env[var] = value

        def read(v: Any) -> Atom:
            return Literal(v.val) if isinstance(v, jex.Literal) else env[v]

        for eqn in jaxpr.eqns:
            ins = [read(v) for v in eqn.invars]
            outs = self._equation(eqn, ins)
            for var, atom in zip(eqn.outvars, outs, strict=True):
                env[var] = atom
        return [read(v) for v in jaxpr.outvars]

    def _nested(self, eqn: Any, ins: list[Atom]) -> tuple[Any, list[Atom], list[Atom]] | None:
        """(jaxpr, consts, args) of an equation to inline, or None to keep it opaque."""
        name, params = eqn.primitive.name, eqn.params
        if name in INLINED_CALLS:
            sub = params.get("jaxpr", params.get("call_jaxpr"))
            if isinstance(sub, jex.ClosedJaxpr):
                return sub.jaxpr, list(sub.consts), ins
            if isinstance(sub, jex.Jaxpr):
                return sub, [], ins
            return None
        if name == "custom_jvp_call" and self.depends(ins):
            sub = params["call_jaxpr"]
            return sub.jaxpr, list(sub.consts), ins
        if name == "cond":
            index = ins[0]
            if isinstance(index, int) and index in self.platform:
                branch = _platform_branch(self.platform[index])
            elif isinstance(index, Literal):
                branch = int(np.clip(int(index.value), 0, len(params["branches"]) - 1))
            else:
                return None
            sub = params["branches"][branch]
            return sub.jaxpr, list(sub.consts), ins[1:]
        return None

    def _equation(self, eqn: Any, ins: list[Atom]) -> list[Atom]:
        nested = self._nested(eqn, ins)
        if nested is not None:
            jaxpr, consts, args = nested
            const_atoms = [self._const(c) for c in consts]
            grouped = eqn.primitive.name == "custom_jvp_call" and not self.in_group
            start, first = len(self.equations), len(self.shapes)
            self.in_group = self.in_group or grouped
            try:
                outs = self.inline(jaxpr, const_atoms, args)
            finally:
                self.in_group = self.in_group and not grouped
            inner = all(isinstance(a, int) and a >= first for a in outs)
            if grouped and inner and len(set(outs)) == len(outs):
                call = Equation(eqn.primitive, dict(eqn.params), tuple(ins), tuple(outs))  # type: ignore[arg-type]
                self.groups.append(Group(call, start, len(self.equations)))
            return outs
        dep = self.depends(ins)
        outs_new = tuple(self.new(v.aval, dep) for v in eqn.outvars)
        if eqn.primitive.name == "platform_index":
            self.platform[outs_new[0]] = eqn.params
        self.equations.append(Equation(eqn.primitive, dict(eqn.params), tuple(ins), outs_new))
        return list(outs_new)

    def _const(self, value: Any) -> Atom:
        return Literal(value)


def _platform_branch(params: Mapping[str, Any]) -> int:
    """The branch ``lax.platform_dependent`` takes on the default backend."""
    backend = jax.default_backend()
    platforms = params["platforms"]
    for i, group in enumerate(platforms):
        if group is not None and backend in group:
            return i
    for i, group in enumerate(platforms):
        if group is None:
            return i
    raise ValueError(f"no branch of a platform-dependent computation runs on {backend!r}")


def trace_program(fn: Callable[..., Any], leaves: Sequence[Any], treedef: Any, x: Any) -> Program:
    """Traces ``fn(params, x)`` (abstractly) into a flat `Program`.

    The arrays held by ``fn`` itself (a callable pytree, e.g. a `FlaxNTKFunction`'s BatchNorm
    statistics) are traced as inputs too, so the program has the same structure whether they
    are concrete or traced by an enclosing ``jit``; they become the program's first constants.

    Args:
      fn: the function ``fn(params, x) -> logits``.
      leaves: the parameter leaves (arrays or ``jax.ShapeDtypeStruct``).
      treedef: the parameters' tree structure.
      x: the input batch (array or ``jax.ShapeDtypeStruct``).
    """
    dynamic, static = partition_callable(fn)

    def flat_fn(leaves: list[Any], x: Any, dynamic: list[Any]) -> Any:
        return combine_callable(dynamic, static)(jax.tree.unflatten(treedef, leaves), x)

    def spec(v: Any) -> jax.ShapeDtypeStruct:
        return jax.eval_shape(lambda a: a, v)  # (Python scalars: weakly typed, as under jit)

    closed = jax.make_jaxpr(flat_fn)([spec(v) for v in leaves], spec(x), [spec(v) for v in dynamic])
    jaxpr = closed.jaxpr
    builder = _Builder()
    args: list[Atom] = []
    for i, var in enumerate(jaxpr.invars[: len(leaves) + 1]):
        args.append(builder.new(var.aval, i < len(leaves)))
    consts: list[Atom] = []
    for var in [*jaxpr.invars[len(leaves) + 1 :], *jaxpr.constvars]:
        consts.append(builder.new(var.aval, False))
    outputs = builder.inline(jaxpr, [*consts[len(dynamic) :]], [*args, *consts[: len(dynamic)]])
    return Program(
        num_leaves=len(leaves),
        consts=(*dynamic, *closed.consts),
        equations=tuple(builder.equations),
        outputs=tuple(outputs),
        shapes=tuple(builder.shapes),
        dtypes=tuple(builder.dtypes),
        groups=tuple(builder.groups),
    )


def bind(eq: Equation, values: Sequence[Any]) -> list[Any]:
    """Applies one equation to ``values``; always a list of outputs.

    Non-overlapping floating-point max pooling runs as `window_max` (same values and
    derivatives, without XLA's select-and-scatter in the backward passes).
    """
    floating = bool(values) and jnp.issubdtype(jnp.result_type(values[0]), jnp.floating)
    if floating and is_disjoint_window_max(eq.name, eq.params):
        return [window_max(values[0], tuple(int(w) for w in eq.params["window_dimensions"]))]
    params = eq.primitive.get_bind_params(eq.params)
    subfuns: tuple[Any, ...] = ()
    if isinstance(params, tuple):  # (subfuns, params) in older JAX versions
        subfuns, params = params
    out = eq.primitive.bind(*subfuns, *values, **params)
    return list(out) if eq.primitive.multiple_results else [out]


def evaluate(
    program: Program,
    leaves: Sequence[Any],
    x: Any,
    *,
    perturbations: Mapping[int, Any] | None = None,
    record: Sequence[int] = (),
    only: Sequence[int] | None = None,
) -> tuple[list[Any], dict[int, Any]]:
    """Runs the program.

    Args:
      program: the program.
      leaves: parameter leaves.
      x: the input batch (None when ``only`` never reads it).
      perturbations: ``{value: array}`` added to those equation outputs as they are computed.
      record: values to return besides the outputs.
      only: indices of the equations to run (in order); None for all.

    Returns:
      ``(outputs, recorded)``; outputs are None when ``only`` skips them.
    """
    perturbations = perturbations or {}
    env: dict[int, Any] = dict(enumerate(leaves))
    env[program.input_id] = x
    for i, c in enumerate(program.consts):
        env[program.input_id + 1 + i] = c

    def read(a: Atom) -> Any:
        return a.value if isinstance(a, Literal) else env[a]

    if only is not None:
        # A custom-derivative call run in full is bound as the call (its rule differentiates
        # it: a straight-through estimator of the parameters is not the derivative of its
        # primal equations).
        chosen = set(only)
        whole = {g.start: g for g in program.groups if chosen.issuperset(range(g.start, g.stop))}
        stop = 0
        for i in only:
            if i < stop:
                continue
            if i in whole:
                stop = whole[i].stop
                _run_group(program, whole[i], env, read, {})
                continue
            eq = program.equations[i]
            for v, out in zip(eq.outs, bind(eq, [read(a) for a in eq.ins]), strict=True):
                env[v] = out
    else:
        groups = {g.start: g for g in program.groups}
        k = 0
        while k < len(program.equations):
            group = groups.get(k)
            if group is None:
                eq = program.equations[k]
                for v, out in zip(eq.outs, bind(eq, [read(a) for a in eq.ins]), strict=True):
                    env[v] = out + perturbations[v] if v in perturbations else out
                k += 1
                continue
            _run_group(program, group, env, read, perturbations)
            k = group.stop
    outputs = [env.get(a) if isinstance(a, int) else a.value for a in program.outputs]
    return outputs, {v: env[v] for v in record}


def _run_group(
    program: Program,
    group: Group,
    env: dict[int, Any],
    read: Callable[[Atom], Any],
    perturbations: Mapping[int, Any],
) -> None:
    """Runs a custom-derivative call: the call for its outputs (its custom rule differentiates
    them), the inlined equations, cut off from differentiation, for the values recorded inside."""
    outs = bind(group.call, [read(a) for a in group.call.ins])
    for eq in program.equations[group.start : group.stop]:
        vals = [jax.lax.stop_gradient(read(a)) for a in eq.ins]
        for v, out in zip(eq.outs, bind(eq, vals), strict=True):
            env[v] = out
    for v, out in zip(group.call.outs, outs, strict=True):
        env[v] = out + perturbations[v] if v in perturbations else out
