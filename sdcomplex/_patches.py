"""Patch matrices of channels-last inputs (shared by the model zoo's convolution and the NTK).

`patch_matrix` lists, for every output position of a convolution, the input values its window
covers, as strided slices of the padded input (one per window offset) concatenated on the
channel axis. `sdcomplex.models.patch_conv` multiplies it by the reshaped kernel; the structured
NTK engine contracts it with output cotangents into per-example weight gradients.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array


def patch_matrix(
    lhs: Array,
    window: Sequence[int],
    strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    rhs_dilation: Sequence[int],
) -> Array:
    """Patches of a channels-last input as strided slices of the padded input.

    Args:
      lhs: input of shape ``(N, *spatial, C_in)``.
      window, strides, rhs_dilation: per spatial axis, as for ``lax.conv_general_dilated``.
      padding: ``"SAME"``, ``"VALID"``, ``"SAME_LOWER"`` or ``(low, high)`` pairs.

    Returns:
      ``(N, *out_spatial, prod(window) * C_in)``, features in the order (window offset, input
      channel), i.e. the order of a ``(*window, C_in, C_out)`` kernel reshaped to
      ``(-1, C_out)``.
    """
    if isinstance(padding, str):
        reach = tuple((k - 1) * d + 1 for k, d in zip(window, rhs_dilation, strict=True))
        pads = lax.padtype_to_pads(lhs.shape[1:-1], reach, strides, padding)
    else:
        pads = [(int(lo), int(hi)) for lo, hi in padding]
    config = [(0, 0, 0), *((int(lo), int(hi), 0) for lo, hi in pads), (0, 0, 0)]
    padded = lax.pad(lhs, jnp.zeros((), lhs.dtype), config)
    out_spatial = [
        (size - ((k - 1) * d + 1)) // s + 1
        for size, k, d, s in zip(padded.shape[1:-1], window, rhs_dilation, strides, strict=True)
    ]
    columns = []
    for offset in itertools.product(*(range(k) for k in window)):
        start = [0, *(o * d for o, d in zip(offset, rhs_dilation, strict=True)), 0]
        limit = [
            lhs.shape[0],
            *(
                st + (n - 1) * s + 1
                for st, n, s in zip(start[1:-1], out_spatial, strides, strict=True)
            ),
            lhs.shape[-1],
        ]
        columns.append(lax.slice(padded, start, limit, (1, *strides, 1)))
    return jnp.concatenate(columns, axis=-1)
