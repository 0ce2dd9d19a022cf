"""Whether the custom derivative rules the structured engine inlines are the primal's derivative.

`sdcomplex.ntk._program` inlines a ``custom_jvp_call`` that a parameter enters directly, and the
sites inside it are differentiated by their primal maths: exact when the custom rule is the
derivative of the primal computation (as for `sdcomplex.models.patch_conv`), wrong otherwise
(e.g. a straight-through estimator around a matrix multiply). `unfaithful_groups` checks each
such call that holds a site once, at the planning examples: it compares the custom rule's
forward-mode derivative with the inlined equations' along a random direction of its
parameter-dependent inputs (one compiled program for all calls). The sites of a call that
fails are not used (its parameters get explicit Jacobians, which follow the custom rule).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sdcomplex.ntk._program import Group, Literal, Program, bind, evaluate


def unfaithful_groups(
    program: Program,
    site_indices: Sequence[int],
    depends_on_params: Sequence[bool],
    leaves: Any,
    x: Any,
) -> frozenset[int]:
    """Starts of the groups holding a site whose custom rule is not their primal's derivative.

    Args:
      program: the program traced at the batch size of ``x``.
      site_indices: the equation indices of the sites.
      depends_on_params: per value of the program, whether it depends on a parameter.
      leaves: the parameter leaves.
      x: the input batch.
    """
    groups = [g for g in program.groups if any(g.start <= k < g.stop for k in site_indices)]
    moving = [_moving(program, g, depends_on_params) for g in groups]
    groups = [g for g, m in zip(groups, moving, strict=True) if m]
    moving = [m for m in moving if m]
    if not groups:
        return frozenset()
    rng = np.random.default_rng(0)
    tangents = [
        [rng.standard_normal(program.shapes[a]).astype(program.dtypes[a]) for a in m]
        for m in moving
    ]

    def derivatives(leaves: Any, x: Any, tangents: Any) -> Any:
        needed = sorted({a for g in groups for a in g.call.ins if isinstance(a, int)})
        upto = range(max(g.start for g in groups))  # (the calls' inputs are computed before)
        _, values = evaluate(program, leaves, x, record=needed, only=upto)
        return [
            _tangents(program, g, m, values, t)
            for g, m, t in zip(groups, moving, tangents, strict=True)
        ]

    try:
        pairs = jax.jit(derivatives)(list(leaves), x, tangents)
    except Exception:  # noqa: BLE001 - primal maths without a derivative: trust no call
        return frozenset(g.start for g in groups)
    return frozenset(g.start for g, (a, b) in zip(groups, pairs, strict=True) if not _agree(a, b))


def _moving(program: Program, group: Group, depends_on_params: Sequence[bool]) -> list[int]:
    """The call's floating-point inputs that depend on the parameters."""
    return [
        a
        for a in dict.fromkeys(group.call.ins)
        if isinstance(a, int)
        and depends_on_params[a]
        and jnp.issubdtype(program.dtypes[a], jnp.inexact)
    ]


def _tangents(
    program: Program, group: Group, moving: list[int], values: dict[int, Any], tangents: Any
) -> tuple[list[Any], list[Any]]:
    """(custom rule's, primal equations') output tangents along ``tangents`` of ``moving``."""

    def read(a: Any, env: dict[int, Any]) -> Any:
        return a.value if isinstance(a, Literal) else env[a]

    def custom(*chosen: Any) -> list[Any]:
        env = {**values, **dict(zip(moving, chosen, strict=True))}
        return bind(group.call, [read(a, env) for a in group.call.ins])

    def primal(*chosen: Any) -> list[Any]:
        env = {**values, **dict(zip(moving, chosen, strict=True))}
        for eq in program.equations[group.start : group.stop]:
            env.update(zip(eq.outs, bind(eq, [read(a, env) for a in eq.ins]), strict=True))
        return [env[v] for v in group.call.outs]

    primals = [values[a] for a in moving]
    _, by_rule = jax.jvp(custom, primals, list(tangents))
    _, by_primal = jax.jvp(primal, primals, list(tangents))
    return by_rule, by_primal


def _agree(by_rule: Sequence[Any], by_primal: Sequence[Any]) -> bool:
    """Equal to round-off (the square root of the precision, relative), where finite."""
    for a, b in zip(by_rule, by_primal, strict=True):
        if not jnp.issubdtype(a.dtype, jnp.inexact):
            continue  # (an integer output has no derivative)
        tol = float(np.sqrt(jnp.finfo(a.dtype).eps))
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
            continue  # (no verdict where a derivative is not finite)
        scale = np.max(np.abs(a), initial=0.0) + np.max(np.abs(b), initial=0.0)
        if np.max(np.abs(a - b), initial=0.0) > tol * scale:
            return False
    return True
