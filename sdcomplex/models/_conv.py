"""Convolution with a patch-matrix forward and weight gradient on CPU (drop-in for lax's).

XLA's CPU convolutions, above all their weight gradients, run far below the machine's
matrix-multiply rate for LeNet-sized layers (5x5 kernels, 48-128 channels; see
benchmarks/README.md). `patch_conv` has the signature and result of
``lax.conv_general_dilated``; on a CPU it computes

* the output as the patch matrix (shifted, strided slices of the padded input, concatenated
  on the channel axis) times the kernel reshaped to (window positions x C_in, C_out);
* the weight gradient as patches^T @ cotangent (the transpose of that product), a plain
  matrix multiply;
* the input gradient with XLA's own convolution (the tangent in the input is
  ``lax.conv_general_dilated``), which is faster than transposing the slices and leaves
  backward passes that need no weight gradient (the NTK engines' cotangent passes) as they
  were.

The patch matrix holds prod(window) times the (padded) input's numbers: 25x for a 5x5 kernel,
e.g. 61 MB for LeNet-5x8's second convolution on a batch of 128. This is a
``jax.custom_jvp``, so forward mode, reverse mode and higher derivatives all work.
The platform is chosen when the computation is lowered (``jax.lax.platform_dependent``):
every platform other than CPU runs ``lax.conv_general_dilated``, so GPUs keep their
convolution libraries. The parameters are ``flax.linen.Conv``'s (kernel ``(*window, in,
out)``), so checkpoints, NTK engines and parameter counts are unchanged.

Example:
    >>> import flax.linen as nn, jax, jax.numpy as jnp
    >>> from sdcomplex.models import patch_conv
    >>> conv = nn.Conv(4, (5, 5), padding="VALID", conv_general_dilated=patch_conv)
    >>> x = jnp.ones((2, 8, 8, 3))
    >>> variables = conv.init(jax.random.PRNGKey(0), x)
    >>> conv.apply(variables, x).shape
    (2, 4, 4, 4)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from sdcomplex._patches import patch_matrix

Array = jax.Array


def _channels_last(dimension_numbers: Any, rank: int) -> bool:
    """Whether the operator's layout is (N, *spatial, C), (*window, I, O), (N, *spatial, C)."""
    numbers = lax.conv_dimension_numbers(
        (1,) * rank, (1,) * rank, dimension_numbers
    )  # ConvDimensionNumbers(lhs_spec, rhs_spec, out_spec), axis indices
    spatial = tuple(range(1, rank - 1))
    return (
        tuple(numbers.lhs_spec) == (0, rank - 1, *spatial)
        and tuple(numbers.rhs_spec) == (rank - 1, rank - 2, *range(rank - 2))
        and tuple(numbers.out_spec) == (0, rank - 1, *spatial)
    )


def patch_conv(
    lhs: Array,
    rhs: Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
) -> Array:
    """``lax.conv_general_dilated`` computed as patches @ kernel when running on a CPU.

    Same signature and result as ``jax.lax.conv_general_dilated`` (pass it to
    ``flax.linen.Conv(conv_general_dilated=patch_conv)``). On CPU, channels-last convolutions
    without input dilation or feature/batch groups are computed as a patch matrix times the
    reshaped kernel; on other platforms, and for every other configuration, it calls
    ``lax.conv_general_dilated``. The two agree to float rounding (different summation order).

    Args:
      lhs: input of shape ``(N, *spatial, C_in)`` (channels last, as Flax passes it).
      rhs: kernel of shape ``(*window, C_in, C_out)``.
      window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
        feature_group_count, batch_group_count, precision, preferred_element_type: as for
        ``lax.conv_general_dilated``.

    Returns:
      The convolution, ``(N, *out_spatial, C_out)``.
    """
    rank = lhs.ndim
    window = tuple(rhs.shape[:-2])
    strides = tuple(int(s) for s in window_strides)
    lhs_dil = tuple(lhs_dilation) if lhs_dilation is not None else (1,) * (rank - 2)
    rhs_dil = tuple(int(d) for d in rhs_dilation) if rhs_dilation is not None else (1,) * (rank - 2)

    def library(lhs: Array, rhs: Array) -> Array:
        return lax.conv_general_dilated(
            lhs,
            rhs,
            window_strides,
            padding,
            lhs_dilation=lhs_dilation,
            rhs_dilation=rhs_dilation,
            dimension_numbers=dimension_numbers,
            feature_group_count=feature_group_count,
            batch_group_count=batch_group_count,
            precision=precision,
            preferred_element_type=preferred_element_type,
        )

    supported = (
        rank >= 3
        and rhs.ndim == rank
        and feature_group_count == 1
        and batch_group_count == 1
        and all(d == 1 for d in lhs_dil)
        and _channels_last(dimension_numbers, rank)
        and rhs.shape[-2] == lhs.shape[-1]
    )
    if not supported:
        return library(lhs, rhs)

    def times_kernel(patches: Array, kernel: Array) -> Array:
        return jnp.matmul(
            patches,
            kernel.reshape(-1, kernel.shape[-1]),
            precision=precision,
            preferred_element_type=preferred_element_type,
        )

    @jax.custom_jvp
    def conv(lhs: Array, rhs: Array) -> Array:
        return times_kernel(patch_matrix(lhs, window, strides, padding, rhs_dil), rhs)

    def conv_jvp(primals: Any, tangents: Any) -> Any:
        (lhs, rhs), (lhs_dot, rhs_dot) = primals, tangents
        patches = patch_matrix(lhs, window, strides, padding, rhs_dil)
        out = times_kernel(patches, rhs)
        terms = []
        if not isinstance(lhs_dot, SymbolicZero):
            terms.append(library(lhs_dot, rhs))
        if not isinstance(rhs_dot, SymbolicZero):
            terms.append(times_kernel(patches, rhs_dot))
        out_dot = sum(terms[1:], terms[0]) if terms else jnp.zeros_like(out)
        return out, out_dot

    conv.defjvp(conv_jvp, symbolic_zeros=True)
    return lax.platform_dependent(lhs, rhs, cpu=conv, default=library)
