"""Closed-form per-example features of matrix-multiply and convolution sites.

For a site y = a W applied to every example separately (a of shape (S, K) for one example, S
positions sharing the weights), the Jacobian of logit c of example i with respect to W is
determined by the site's input a_i and the output cotangent g_ci = d f_c(x_i) / d y_i:

* the weight gradient is sum_s a_is (x) g_cis, so Theta_cd(i, j) gains
  sum_st (a_is . a_jt)(g_cis . g_djt); with S = 1 that is the elementwise product
  (A A^T) * (G_c G_d^T) and no P-sized vector forms ("outer" method);
* a convolution is the same on image patches (strided slices of the padded input, or
  ``lax.conv_general_dilated_patches`` with input dilation), or explicit per-example weight
  gradients patches^T @ g, one batched matrix multiply per site ("explicit" method).

`LayerTap` describes one site in the canonical layout (example axis first, features last);
`sdcomplex.ntk._sites` finds the sites in a function's jaxpr.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from sdcomplex._patches import patch_matrix
from sdcomplex.ntk._contract import HIGHEST

Path = tuple[str, ...]

_SPATIAL = "HWDUVXYZ"


@dataclasses.dataclass(frozen=True)
class LayerTap:
    """One matrix-multiply or convolution site in canonical layout (hashable).

    Attributes:
      path: a name for the site (e.g. ``("dot_general", "12")``, the equation's index).
      kind: ``"dense"`` (a matrix multiply over the last axis) or ``"conv"``.
      in_shape: the site's input for one example: (*positions, K) for ``"dense"``,
        (*spatial, C_in) for ``"conv"``.
      out_shape: the site's output for one example: (*positions, O) or (*spatial, C_out).
      method: ``"outer"`` (Gram from input and cotangent Grams, no weight-sized vector) or
        ``"explicit"`` (per-example weight gradients, contracted by a matrix multiply).
      kernel_size, strides, padding, input_dilation, kernel_dilation, groups: convolution
        configuration (``padding`` is a tuple of (low, high) pairs).
    """

    path: Path
    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    method: str = "explicit"
    kernel_size: tuple[int, ...] = ()
    strides: tuple[int, ...] = ()
    padding: Any = None
    input_dilation: tuple[int, ...] = ()
    kernel_dilation: tuple[int, ...] = ()
    groups: int = 1

    @property
    def positions(self) -> int:
        """S: positions sharing the weights (extra input axes, convolution output pixels)."""
        if self.kind == "dense":
            return math.prod(self.in_shape[:-1])
        return math.prod(self.out_shape[:-1])

    @property
    def fan_in(self) -> int:
        """K: length of one input vector (one patch of one feature group for a convolution)."""
        if self.kind == "dense":
            return self.in_shape[-1]
        return math.prod(self.kernel_size) * self.in_shape[-1] // self.groups

    @property
    def num_features(self) -> int:
        """O: output features."""
        return self.out_shape[-1]

    @property
    def kernel_size_params(self) -> int:
        """Number of weights."""
        return self.fan_in * self.num_features

    @property
    def outer_allowed(self) -> bool:
        """Whether the input/cotangent-Gram form applies (no feature groups)."""
        return self.groups == 1

    def with_method(self, method: str) -> LayerTap:
        """A copy using ``method``."""
        return dataclasses.replace(self, method=method)


def conv_patches(tap: LayerTap, a: jax.Array) -> jax.Array:
    """(b, S, G, K) image patches of a convolution's input (features grouped by ``G``).

    The order of the K features inside a group is not the kernel's; every use of the patches
    contracts them with themselves (patch Grams) or with cotangents into per-example gradients
    that are only ever contracted with each other, so any fixed order gives the same kernel.
    """
    if all(d == 1 for d in tap.input_dilation):
        return _sliced_patches(tap, a)
    return _dilated_patches(tap, a)


def _dilated_patches(tap: LayerTap, a: jax.Array) -> jax.Array:
    """`conv_patches` by ``lax.conv_general_dilated_patches`` (any input dilation)."""
    rank = len(tap.kernel_size)
    spatial = _SPATIAL[:rank]
    numbers = ("N" + spatial + "C", spatial + "IO", "N" + spatial + "C")
    patches = jax.lax.conv_general_dilated_patches(
        a,
        filter_shape=tap.kernel_size,
        window_strides=tap.strides,
        padding=tap.padding,
        lhs_dilation=tap.input_dilation,
        rhs_dilation=tap.kernel_dilation,
        dimension_numbers=numbers,
        precision=HIGHEST,
    )
    # Feature order of the patches is (input channel, filter position): channel-major, so the
    # channels of one group are contiguous.
    return patches.reshape(a.shape[0], tap.positions, tap.groups, tap.fan_in)


def _sliced_patches(tap: LayerTap, a: jax.Array) -> jax.Array:
    """`conv_patches` as strided slices of the padded input, one per kernel offset.

    On CPU this is several times faster than ``lax.conv_general_dilated_patches`` (which runs
    an identity-kernel convolution), and its gradient-free use here needs nothing more.
    """
    patches = patch_matrix(a, tap.kernel_size, tap.strides, tap.padding, tap.kernel_dilation)
    b, cin, groups = a.shape[0], a.shape[-1], tap.groups
    if groups == 1:
        return patches.reshape(b, tap.positions, 1, tap.fan_in)
    offsets = math.prod(tap.kernel_size)
    patches = patches.reshape(b, tap.positions, offsets, groups, cin // groups)
    return jnp.swapaxes(patches, 2, 3).reshape(b, tap.positions, groups, tap.fan_in)


@dataclasses.dataclass(frozen=True)
class Outer:
    """Input/cotangent factors of a layer whose Gram is built from their Grams.

    Attributes:
      inputs: (b, S, K) layer inputs (patches for a convolution).
      cotangents: (m, b, S, O) output cotangents of the part's m logits.
    """

    inputs: jax.Array
    cotangents: jax.Array


jax.tree_util.register_dataclass(Outer, data_fields=["inputs", "cotangents"], meta_fields=[])


def layer_features(
    tap: LayerTap, recorded: jax.Array, cotangents: jax.Array
) -> tuple[list[jax.Array], Outer | None]:
    """Per-example features of one layer for one part.

    Args:
      tap: the layer.
      recorded: (b, *in_shape) the site's input, in canonical layout.
      cotangents: (m, b, *out_shape) output cotangents for the part's m logits.

    Returns:
      ``(explicit, outer)``: explicit per-example gradients as arrays of shape (p1, m, p2, b)
      (the Gram contracts over p1 and p2; the example axis last makes the contraction a
      transposed-operand matrix multiply, about twice as fast on CPU as the example-major
      layout), and the `Outer` factors or None.
    """
    m, b = cotangents.shape[:2]
    s, k, o = tap.positions, tap.fan_in, tap.num_features
    groups = tap.groups
    if tap.kind == "conv":
        a = conv_patches(tap, recorded)  # (b, S, G, K)
    else:
        a = recorded.reshape(b, s, 1, k)
    g = cotangents.reshape(m, b, s, groups, o // groups)
    if tap.method == "outer":
        return [], Outer(a.reshape(b, s, k), g.reshape(m, b, s, o))
    if groups == 1:
        # One (K, S) @ (S, m O) product per example, in the batch-first layout XLA:CPU runs
        # fastest (3x faster than the same einsum written straight into (K, m, O, b) for
        # LeNet-5x8's second convolution), then transposed to the example-last layout.
        gb = jnp.transpose(g[:, :, :, 0], (1, 2, 0, 3)).reshape(b, s, m * o)
        per = jnp.matmul(jnp.swapaxes(a[:, :, 0], 1, 2), gb, precision=HIGHEST)
        return [jnp.transpose(per.reshape(b, k, m, o), (1, 2, 3, 0))], None
    grads = jnp.einsum("bsgk,mbsgo->gkmob", a, g, precision=HIGHEST)
    return [grads.reshape(groups * k, m, o // groups, b)], None
