"""Contractions shared by the implementations: per-logit feature matrices to Gram blocks."""

from __future__ import annotations

import jax
import jax.numpy as jnp

HIGHEST = jax.lax.Precision.HIGHEST


def contract_jacobians(j1: jax.Array, j2: jax.Array, outputs: str) -> jax.Array:
    """Gram block from per-example, per-logit feature matrices.

    Args:
      j1: (b1, C, p) rows of the Jacobian (one p-vector per example and logit).
      j2: (b2, C, p).
      outputs: ``"mean"`` -> (b1, b2) = (1/C) sum_c j1[:, c] j2[:, c]^T; ``"diag"`` ->
        (C, b1, b2); ``"full"`` -> (b1, b2, C, C).

    Full precision is requested explicitly: TF32 matrix multiplies are too coarse for kernels.
    """
    if outputs == "mean":
        num_outputs = j1.shape[1]
        return jnp.einsum("icp,jcp->ij", j1, j2, precision=HIGHEST) / num_outputs
    if outputs == "diag":
        return jnp.einsum("icp,jcp->cij", j1, j2, precision=HIGHEST)
    return jnp.einsum("icp,jdp->ijcd", j1, j2, precision=HIGHEST)


def reduce_full(full: jax.Array, outputs: str) -> jax.Array:
    """(b1, b2, C, C) full block to the requested ``outputs`` form."""
    if outputs == "full":
        return full
    diag = jnp.diagonal(full, axis1=2, axis2=3)  # (b1, b2, C)
    if outputs == "mean":
        return jnp.mean(diag, axis=-1)
    return jnp.moveaxis(diag, -1, 0)
