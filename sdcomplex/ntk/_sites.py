"""Where a function's parameters meet its examples: the sites of the structured NTK engine.

`analyse` reads a `Program` (``sdcomplex.ntk._program``) traced at two batch sizes. A value
depends on the parameters, on the input, on both or on neither; the axis whose size follows
the batch size is its example axis. Every equation that combines a parameter-only value with
an input-dependent one is a boundary of the parameters. A boundary is a *site* when its
per-example Jacobian has a closed form (dense layers, convolutions, elementwise scales and
shifts: `sdcomplex.ntk._site_match`).

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
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sdcomplex.ntk._custom_rules import unfaithful_groups
from sdcomplex.ntk._engine import combine_callable, partition_callable
from sdcomplex.ntk._program import Program
from sdcomplex.ntk._site_match import Site, match_site, shape_of

VIEWS = ("reshape", "transpose", "convert_element_type", "copy", "copy_p", "squeeze")
"""Parameter-only operations that only rearrange a leaf (its Gram is unchanged); so does a
``broadcast_in_dim`` that only inserts axes of size 1."""


class UnsupportedStructure(Exception):
    """The two traces differ in structure (no site can be trusted)."""


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


def _use_counts(p: Program) -> list[int]:
    """Per value: how many equation operands and program outputs read it."""
    uses = [0] * len(p.shapes)
    for eq in p.equations:
        for a in eq.ins:
            if isinstance(a, int):
                uses[a] += 1
    for a in p.outputs:
        if isinstance(a, int):
            uses[a] += 1
    return uses


def _boundaries(
    p2: Program,
    p3: Program,
    on_input: list[bool],
    leafsets: list[frozenset[int]],
    producer: dict[int, int],
    distrusted: frozenset[int],
) -> tuple[list[Site], set[int]]:
    """The sites among the boundaries, and the leaves that reach any other boundary."""
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
        site = match_site(eq, k, p2, p3, on_input, producer)
        group = in_group.get(k)
        if site is not None and group is not None and site.out not in group.call.outs:
            site = None  # inside a custom-derivative call, its output cannot be perturbed
        if site is not None and group is not None and group.start in distrusted:
            site = None  # a custom rule that is not the derivative of the primal maths
        if site is None:
            fallback.update(*(leafsets[a] for a in params_in))
        else:
            sites.append(site)
    for a in p2.outputs:
        if isinstance(a, int) and not on_input[a]:
            fallback.update(leafsets[a])
    return sites, fallback


def _kept_sites(
    sites: list[Site],
    direct: dict[int, int],
    composite: set[int],
    leafsets: list[frozenset[int]],
    p: Program,
) -> tuple[Site, ...]:
    """The sites some direct or composite leaf reaches, with their sizes and direct leaf."""
    kept = []
    for i, site in enumerate(sites):
        site = dataclasses.replace(
            site,
            act_size=math.prod(p.shapes[site.act]) // 2,
            out_size=math.prod(p.shapes[site.out]) // 2,
            operand_size=math.prod(shape_of(p, site.operand)),
        )
        if i in direct:
            kept.append(dataclasses.replace(site, leaf=direct[i]))
        elif leafsets[site.operand] & composite:
            kept.append(site)
    return tuple(kept)


def analyse(p2: Program, p3: Program, distrusted: frozenset[int] = frozenset()) -> Analysis:
    """Sites and leaf partition from traces at batch sizes 2 and 3 (see the module docstring).

    ``distrusted``: starts of ``p2``'s custom-derivative groups whose sites are not used
    (see `check_custom_rules`).

    Raises:
      UnsupportedStructure: if the two traces are not the same program.
    """
    if p2.signature() != p3.signature() or len(p2.shapes) != len(p3.shapes):
        raise UnsupportedStructure("the traces at batch sizes 2 and 3 differ")
    on_input, leafsets = _dependence(p2)
    producer = {v: k for k, eq in enumerate(p2.equations) for v in eq.outs}
    uses = _use_counts(p2)
    sites, fallback = _boundaries(p2, p3, on_input, leafsets, producer, distrusted)
    direct: dict[int, int] = {}
    for i, site in enumerate(sites):
        leaf = _direct_leaf(site, p2, producer, uses)
        if leaf is not None and leaf not in fallback and uses[leaf] == 1:
            direct[i] = leaf
    reached = set().union(*(leafsets[s.operand] for s in sites)) if sites else set()
    composite = reached - fallback - set(direct.values())
    param_only = tuple(
        k
        for k, eq in enumerate(p2.equations)
        if not any(isinstance(a, int) and on_input[a] for a in eq.ins)
    )
    return Analysis(
        sites=_kept_sites(sites, direct, composite, leafsets, p2),
        composite=tuple(sorted(composite)),
        fallback=tuple(sorted(fallback)),
        param_only=param_only,
        signature=p2.signature(),
        num_values=len(p2.shapes),
    )


def check_custom_rules(
    p2: Program, p3: Program, analysis: Analysis, leaves: Any, x: Any
) -> Analysis:
    """The analysis without the sites of custom-derivative calls whose custom rule is not the
    derivative of their primal maths at the first two examples of ``x``
    (`sdcomplex.ntk._custom_rules`)."""
    x2 = _two_examples(x)
    on_params = [bool(s) for s in _dependence(p2)[1]]
    distrusted = unfaithful_groups(p2, [s.index for s in analysis.sites], on_params, leaves, x2)
    return analyse(p2, p3, distrusted) if distrusted else analysis


def _two_examples(x: Any) -> np.ndarray:
    """The first two examples of ``x`` (the first twice when ``x`` has one)."""
    x = np.asarray(x)
    return np.concatenate([x, x], axis=0)[:2] if x.shape[0] < 2 else x[:2]


@functools.partial(jax.jit, static_argnames=("static",))
def _tangent_logits(static: Any, dynamic: list[Any], params: Any, x: Any, tangent: Any) -> Any:
    """The tangent of ``fn(params, x)`` along ``tangent`` (the derivative in the direction of
    ``tangent`` in x), ``fn`` given as `partition_callable` splits it: compiled once per
    function, whatever the arrays it holds (e.g. BatchNorm statistics)."""
    fn = combine_callable(dynamic, static)
    return jax.jvp(lambda x: fn(params, x), (x,), (tangent,))[1]


@functools.partial(jax.jit, static_argnames=("static",))
def _logits(static: Any, dynamic: list[Any], params: Any, x: Any) -> Any:
    """``fn(params, x)``, ``fn`` given as `partition_callable` splits it."""
    return combine_callable(dynamic, static)(params, x)


def check_independent(fn: Callable[..., Any], params: Any, x: Any) -> None:
    """Raises ValueError if an example's logits depend on another example.

    One forward-mode pass perturbs the first of two examples (a random tangent; the first
    example is repeated when ``x`` has one) and checks that the other example's logits stay
    exactly unperturbed. This catches BatchNorm with batch statistics, means over the batch
    and every other coupling that reaches the logits at this point. The pass is one compiled
    program (op by op, a deep model would compile every layer's operations separately).

    Where the other example's tangent is not finite (an infinite input derivative times the
    zero tangent, e.g. ``sqrt`` of an input that is 0), where the inputs have no tangents
    (integer or boolean inputs: the first example is changed by one, or negated) or where
    ``fn`` has no forward-mode derivative (``jax.custom_vjp``), its logits are compared
    instead: with the first example moved, they must stay bit for bit the same.
    """
    x = _two_examples(x)
    dynamic, static = partition_callable(fn)
    if jnp.issubdtype(x.dtype, jnp.inexact):
        rng = np.random.default_rng(0)
        tangent = np.zeros(x.shape, x.dtype)
        tangent[0] = rng.standard_normal(x.shape[1:])
        moved = x + tangent
        try:
            others = np.asarray(
                _tangent_logits(static, dynamic, params, jnp.asarray(x), jnp.asarray(tangent))
            )[1:]
        except TypeError:  # no forward mode (jax.custom_vjp): compare the logits
            others = None
        if others is not None and np.all(others == 0):
            return
        if others is not None and np.all(np.isfinite(others)):
            _raise_interaction()
    else:
        moved = x.copy()
        moved[0] = ~x[0] if x.dtype == np.bool_ else x[0] + 1
    after = np.asarray(_logits(static, dynamic, params, jnp.asarray(moved)))[1:]
    if not np.array_equal(
        after, np.asarray(_logits(static, dynamic, params, jnp.asarray(x)))[1:], True
    ):
        _raise_interaction()


def _raise_interaction() -> None:
    raise ValueError(
        "examples interact: perturbing one example changes another example's logits "
        "(e.g. BatchNorm with batch statistics, or a mean over the batch); the "
        "empirical NTK needs fn(params, x) to treat examples independently (BatchNorm "
        "in inference mode)"
    )
