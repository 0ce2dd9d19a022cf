"""Contractions of the structured NTK engine's features into kernel blocks.

Explicit features (p1, m, p2, b) are per-example gradients: the Gram contracts p1 and p2.
`Outer` features give a layer's Gram from its input and cotangent Grams,
sum_st (a_is . a_jt)(g_cis . g_djt) (with S = 1 the elementwise product of the two Grams).
The mean kernel is summed over logits here, not averaged.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from sdcomplex.ntk._contract import HIGHEST
from sdcomplex.ntk._layers import Outer


def batch_of(f: dict[str, Any]) -> int:
    """The number of examples of a block's features."""
    if f["explicit"]:
        return int(f["explicit"][0].shape[-1])
    return int(f["outer"][0].inputs.shape[0])


def num_logits(f: dict[str, Any]) -> int:
    """The number of logits m of a part's features."""
    if f["explicit"]:
        return int(f["explicit"][0].shape[1])
    return int(f["outer"][0].cotangents.shape[0])


def dtype_of(f: dict[str, Any]) -> Any:
    """The features' dtype."""
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
        aa = jnp.matmul(a1, a2.T, precision=HIGHEST)
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
