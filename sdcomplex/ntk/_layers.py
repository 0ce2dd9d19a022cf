"""Layer taps for the structured NTK engine: which Flax layers have closed-form Jacobians.

For a layer y = layer(a; w) applied to every example separately, the Jacobian of logit c of
example i with respect to w is determined by the layer's input a_i and the output cotangent
g_ci = d f_c(x_i) / d y_i:

* ``nn.Dense`` (y = a W + b, a of shape (S, K) when the input has S positions): the weight
  gradient is sum_s a_is (x) g_cis, so Theta_cd(i, j) gains sum_st (a_is . a_jt)(g_cis . g_djt);
  with S = 1 that is the elementwise product (A A^T) * (G_c G_d^T) and no P-sized vector forms;
* ``nn.Conv``: the same on image patches (lax.conv_general_dilated_patches), or explicit
  per-example weight gradients patches^T @ g, one batched matrix multiply per layer;
* ``nn.BatchNorm`` in inference mode (y = x_hat * scale + bias): per-example gradients
  sum_positions g * x_hat and sum_positions g.

This module discovers those layers (`discover_taps`, by tracing the model once with
``flax.linen.intercept_methods``) and computes their per-example features (`layer_features`).
A layer is tapped only when its configuration is one whose Jacobian these formulas give
exactly: the exact ``nn.Dense`` / ``nn.Conv`` / ``nn.BatchNorm`` classes with default dot and
convolution functions (or `sdcomplex.models.patch_conv`, the same convolution), no mask,
zero-padding, the example axis first and called once per forward pass; every other trainable
parameter is left to an explicit Jacobian.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from sdcomplex.models._conv import patch_conv, patch_matrix
from sdcomplex.ntk._contract import HIGHEST

Path = tuple[str, ...]

_KINDS: dict[type, str] = {nn.Dense: "dense", nn.Conv: "conv", nn.BatchNorm: "batchnorm"}
_PARAM_NAMES = {
    "dense": ("kernel", "bias"),
    "conv": ("kernel", "bias"),
    "batchnorm": ("scale", "bias"),
}
_SPATIAL = "HWDUVXYZ"
_EXACT_CONVS = (None, jax.lax.conv_general_dilated, patch_conv)
"""Convolution functions of ``nn.Conv`` that compute the standard convolution exactly."""


@dataclasses.dataclass(frozen=True)
class LayerTap:
    """One layer handled in closed form (hashable: part of the compiled engine's identity).

    Attributes:
      path: module path, e.g. ``("stage1_block1", "conv1")``; its parameters are at
        ``path + (name,)`` in the parameter tree.
      kind: ``"dense"``, ``"conv"`` or ``"batchnorm"``.
      params: names of the layer's trainable parameters this tap accounts for.
      in_shape: the layer's input shape for one example (no batch axis).
      out_shape: the layer's output shape for one example.
      method: ``"outer"`` (Gram from input and cotangent Grams, no weight-sized vector) or
        ``"explicit"`` (per-example parameter gradients, contracted by a matrix multiply).
      kernel_size, strides, padding, input_dilation, kernel_dilation, groups: convolution
        configuration (``padding`` is a string or a tuple of (low, high) pairs).
      feature_axes: BatchNorm feature axes, counted in the batched input (never 0).
      epsilon: BatchNorm epsilon.
    """

    path: Path
    kind: str
    params: tuple[str, ...]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    method: str = "explicit"
    kernel_size: tuple[int, ...] = ()
    strides: tuple[int, ...] = ()
    padding: Any = None
    input_dilation: tuple[int, ...] = ()
    kernel_dilation: tuple[int, ...] = ()
    groups: int = 1
    feature_axes: tuple[int, ...] = ()
    epsilon: float = 0.0

    @property
    def positions(self) -> int:
        """S: positions sharing the weights (Dense extra axes, conv output pixels, BN pixels)."""
        if self.kind == "dense":
            return math.prod(self.in_shape[:-1])
        if self.kind == "conv":
            return math.prod(self.out_shape[:-1])
        return math.prod(self.in_shape) // self.num_features

    @property
    def fan_in(self) -> int:
        """K: length of one input vector (one patch of one feature group for a convolution)."""
        if self.kind == "dense":
            return self.in_shape[-1]
        if self.kind == "conv":
            return math.prod(self.kernel_size) * self.in_shape[-1] // self.groups
        return 1

    @property
    def num_features(self) -> int:
        """O: output features (BatchNorm: number of normalised features)."""
        if self.kind == "batchnorm":
            return math.prod(self.in_shape[a - 1] for a in self.feature_axes)
        return self.out_shape[-1]

    @property
    def kernel_size_params(self) -> int:
        """Number of weight (``kernel`` / ``scale``) parameters."""
        if self.kind == "batchnorm":
            return self.num_features
        return self.fan_in * self.num_features

    @property
    def outer_allowed(self) -> bool:
        """Whether the input/cotangent-Gram form applies (weights trainable, no groups)."""
        return self.kind in ("dense", "conv") and "kernel" in self.params and self.groups == 1

    def with_method(self, method: str) -> LayerTap:
        """A copy using ``method``."""
        return dataclasses.replace(self, method=method)


def flax_function(fn: Any) -> Any:
    """The `FlaxNTKFunction` behind ``fn`` (possibly wrapped to add an output axis), or None."""
    from sdcomplex.ntk._flax import FlaxNTKFunction

    for candidate in (fn, getattr(fn, "fn", None)):
        if isinstance(candidate, FlaxNTKFunction):
            return candidate
    return None


def _canonical_padding(padding: Any, rank: int) -> Any:
    """Flax's padding argument as lax accepts it, or None for CIRCULAR/REFLECT/CAUSAL."""
    if isinstance(padding, str):
        return padding if padding.upper() in ("SAME", "VALID", "SAME_LOWER") else None
    if isinstance(padding, int):
        return ((padding, padding),) * rank
    if isinstance(padding, Sequence) and len(padding) == rank:
        pairs = []
        for item in padding:
            if isinstance(item, int):
                pairs.append((item, item))
            elif isinstance(item, Sequence) and len(item) == 2:
                pairs.append((int(item[0]), int(item[1])))
            else:
                return None
        return tuple(pairs)
    return None


def _broadcast(value: Any, rank: int) -> tuple[int, ...]:
    if value is None:
        return (1,) * rank
    if isinstance(value, int):
        return (value,) * rank
    return tuple(int(v) for v in value)


def _describe(mod: nn.Module, args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> Any:
    """A hashable description of one call of a candidate layer, or None if not tappable."""
    kind = _KINDS[type(mod)]
    if not args or not hasattr(args[0], "shape") or not hasattr(out, "shape"):
        return None
    a_shape, y_shape = tuple(args[0].shape), tuple(out.shape)
    common = {"path": tuple(str(p) for p in mod.path), "kind": kind}
    if getattr(mod, "dtype", None) is not None:
        return None
    if kind == "dense":
        if mod.dot_general is not None or mod.dot_general_cls is not None or len(a_shape) < 2:
            return None
        return {**common, "in": a_shape, "out": y_shape}
    if kind == "conv":
        kernel_size = (
            (mod.kernel_size,) if isinstance(mod.kernel_size, int) else tuple(mod.kernel_size)
        )
        rank = len(kernel_size)
        padding = _canonical_padding(mod.padding, rank)
        if (
            padding is None
            or mod.mask is not None
            or mod.conv_general_dilated not in _EXACT_CONVS
            or mod.conv_general_dilated_cls is not None
            or not mod.shared_weights
            or len(a_shape) != rank + 2
        ):
            return None
        return {
            **common,
            "in": a_shape,
            "out": y_shape,
            "kernel_size": kernel_size,
            "strides": _broadcast(mod.strides, rank),
            "padding": padding,
            "input_dilation": _broadcast(mod.input_dilation, rank),
            "kernel_dilation": _broadcast(mod.kernel_dilation, rank),
            "groups": int(mod.feature_group_count),
        }
    if kwargs.get("mask") is not None:
        return None
    axes = (mod.axis,) if isinstance(mod.axis, int) else tuple(mod.axis)
    feature_axes = tuple(sorted(a % len(a_shape) for a in axes))
    if 0 in feature_axes:
        return None
    return {
        **common,
        "in": a_shape,
        "out": y_shape,
        "feature_axes": feature_axes,
        "epsilon": float(mod.epsilon),
    }


def _trace_calls(fn: Callable[..., Any], params: Any, example: jax.ShapeDtypeStruct) -> list[Any]:
    calls: list[Any] = []

    def interceptor(next_fun, args, kwargs, context):  # type: ignore[no-untyped-def]
        out = next_fun(*args, **kwargs)
        if context.method_name == "__call__" and type(context.module) in _KINDS:
            calls.append(_describe(context.module, args, kwargs, out))
        return out

    with nn.intercept_methods(interceptor):
        # A fresh callable each time: eval_shape caches traces, and the interceptor must run.
        jax.eval_shape(lambda p, x: fn(p, x), params, example)
    return calls


def _expected_shapes(desc: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Parameter shapes a tapped layer must have (guards against lifted transforms)."""
    kind, a, y = desc["kind"], desc["in"], desc["out"]
    if kind == "dense":
        return {"kernel": (a[-1], y[-1]), "bias": (y[-1],)}
    if kind == "conv":
        kernel = (*desc["kernel_size"], a[-1] // desc["groups"], y[-1])
        return {"kernel": kernel, "bias": (y[-1],)}
    features = tuple(a[ax] for ax in desc["feature_axes"])
    return {"scale": features, "bias": features}


def discover_taps(
    fn: Callable[..., Any], params: Any, example_shape: Sequence[int], dtype: Any
) -> tuple[tuple[LayerTap, ...], tuple[Path, ...]]:
    """Finds the layers of a Flax NTK function whose Jacobians have closed forms.

    The model is traced (no computation) with batches of 2 and 3 examples; a layer is tapped
    when both traces agree that its input and output keep the example axis first, it is called
    exactly once, its configuration is supported and its parameters have the expected shapes.

    Args:
      fn: a `FlaxNTKFunction` (or a wrapper with attribute ``fn``).
      params: the trainable parameters (nested dict).
      example_shape: shape of one input example.
      dtype: input dtype.

    Returns:
      ``(taps, uncovered)``: the tapped layers (method ``"explicit"``, to be decided by the
      planner) and the trainable parameter paths no tap accounts for.

    BatchNorm must run in inference mode (Flax refuses training mode without a mutable
    ``batch_stats`` collection, which `FlaxNTKFunction` never passes).
    """
    flax_fn = flax_function(fn)
    if flax_fn is None:
        raise TypeError("the structured NTK engine needs a FlaxNTKFunction (see flax_ntk_fn)")
    flat = {
        tuple(str(k) for k in path): tuple(np.shape(leaf))
        for path, leaf in traverse_util.flatten_dict(params).items()
    }
    traces = [
        _trace_calls(fn, params, jax.ShapeDtypeStruct((b, *example_shape), dtype)) for b in (2, 3)
    ]
    counts: dict[Path, int] = {}
    for desc in traces[0]:
        if desc is not None:
            counts[desc["path"]] = counts.get(desc["path"], 0) + 1
    taps = []
    for d2, d3 in zip(*traces, strict=True):
        if d2 is None or d3 is None or counts.get(d2["path"], 0) != 1:
            continue
        if d2["in"][0] != 2 or d3["in"][0] != 3 or d2["out"][0] != 2 or d3["out"][0] != 3:
            continue
        if d2["in"][1:] != d3["in"][1:] or d2["out"][1:] != d3["out"][1:]:
            continue
        expected = _expected_shapes(d2)
        names = tuple(name for name in _PARAM_NAMES[d2["kind"]] if d2["path"] + (name,) in flat)
        if not names or any(flat[d2["path"] + (name,)] != expected[name] for name in names):
            continue
        extra = {
            k: d2[k]
            for k in (
                "kernel_size",
                "strides",
                "padding",
                "input_dilation",
                "kernel_dilation",
                "groups",
                "feature_axes",
                "epsilon",
            )
            if k in d2
        }
        taps.append(
            LayerTap(
                path=d2["path"],
                kind=d2["kind"],
                params=names,
                in_shape=tuple(d2["in"][1:]),
                out_shape=tuple(d2["out"][1:]),
                **extra,
            )
        )
    covered = {tap.path + (name,) for tap in taps for name in tap.params}
    uncovered = tuple(sorted(path for path in flat if path not in covered))
    return tuple(taps), uncovered


# --- recording inputs and output cotangents -------------------------------------------------


def tapped_forward(
    fn: Callable[..., Any],
    params: Any,
    x: jax.Array,
    taps: Sequence[LayerTap],
    perturbations: Mapping[Path, jax.Array],
) -> tuple[jax.Array, dict[Path, jax.Array]]:
    """Runs ``fn(params, x)`` adding ``perturbations[path]`` to each tapped layer's output.

    Returns the logits and, per tapped layer, what its features need from the forward pass:
    the layer input (Dense, Conv) or the normalised input x_hat (BatchNorm). The cotangents of
    the perturbations (all zero) are the layers' output cotangents.
    """
    by_path = {tap.path: tap for tap in taps}
    recorded: dict[Path, jax.Array] = {}

    def interceptor(next_fun, args, kwargs, context):  # type: ignore[no-untyped-def]
        mod = context.module
        if context.method_name != "__call__" or type(mod) not in _KINDS:
            return next_fun(*args, **kwargs)
        path = tuple(str(p) for p in mod.path)
        tap = by_path.get(path)
        if tap is None:
            return next_fun(*args, **kwargs)
        out = next_fun(*args, **kwargs)
        a = args[0]
        if tap.kind == "batchnorm":
            stats = mod.variables["batch_stats"]
            shape = [1] * a.ndim
            for ax in tap.feature_axes:
                shape[ax] = a.shape[ax]
            mean = jnp.reshape(stats["mean"], shape)
            var = jnp.reshape(stats["var"], shape)
            a = (a - mean) * jax.lax.rsqrt(var + tap.epsilon)
        recorded[path] = a
        return out + perturbations[path]

    with nn.intercept_methods(interceptor):
        logits = fn(params, x)
    if logits.ndim == 1:
        logits = logits[:, None]
    return logits, recorded


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
      bias: whether the (trainable) bias is folded in (only when S = 1).
    """

    inputs: jax.Array
    cotangents: jax.Array
    bias: bool


jax.tree_util.register_dataclass(Outer, data_fields=["inputs", "cotangents"], meta_fields=["bias"])


def layer_features(
    tap: LayerTap, recorded: jax.Array, cotangents: jax.Array
) -> tuple[list[jax.Array], Outer | None]:
    """Per-example features of one layer for one part.

    Args:
      tap: the layer.
      recorded: (b, *in_shape) what `tapped_forward` recorded.
      cotangents: (m, b, *out_shape) output cotangents for the part's m logits.

    Returns:
      ``(explicit, outer)``: explicit per-example gradients as arrays of shape (p1, m, p2, b)
      (the Gram contracts over p1 and p2; the example axis last makes the contraction a
      transposed-operand matrix multiply, about twice as fast on CPU as the example-major
      layout), and the `Outer` factors or None.
    """
    m, b = cotangents.shape[:2]
    s, k, o = tap.positions, tap.fan_in, tap.num_features
    explicit: list[jax.Array] = []
    if tap.kind == "batchnorm":
        axes = tuple(range(1, recorded.ndim))
        reduce = tuple(ax + 1 for ax in axes if ax not in tap.feature_axes)
        g = cotangents
        if "scale" in tap.params:
            scale = jnp.sum(g * recorded[None], axis=reduce).reshape(m, b, o)
            explicit.append(jnp.transpose(scale, (0, 2, 1))[None])
        if "bias" in tap.params:
            bias = jnp.sum(g, axis=reduce).reshape(m, b, o)
            explicit.append(jnp.transpose(bias, (0, 2, 1))[None])
        return explicit, None
    groups = tap.groups
    if tap.kind == "conv":
        a = conv_patches(tap, recorded)  # (b, S, G, K)
    else:
        a = recorded.reshape(b, s, 1, k)
    g = cotangents.reshape(m, b, s, groups, o // groups)
    outer = None
    if tap.method == "outer":
        fold_bias = "bias" in tap.params and s == 1
        outer = Outer(a.reshape(b, s, k), g.reshape(m, b, s, o), fold_bias)
    elif "kernel" in tap.params:
        if groups == 1:
            # One (K, S) @ (S, m O) product per example, in the batch-first layout XLA:CPU
            # runs fastest (3x faster than the same einsum written straight into (K, m, O, b)
            # for LeNet-5x8's second convolution), then transposed to the example-last layout.
            gb = jnp.transpose(g[:, :, :, 0], (1, 2, 0, 3)).reshape(b, s, m * o)
            per = jnp.matmul(jnp.swapaxes(a[:, :, 0], 1, 2), gb, precision=HIGHEST)
            explicit.append(jnp.transpose(per.reshape(b, k, m, o), (1, 2, 3, 0)))
        else:
            grads = jnp.einsum("bsgk,mbsgo->gkmob", a, g, precision=HIGHEST)
            explicit.append(grads.reshape(groups * k, m, o // groups, b))
    if "bias" in tap.params and not (outer is not None and outer.bias):
        bias = jnp.sum(cotangents.reshape(m, b, s, o), axis=2)
        explicit.append(jnp.transpose(bias, (0, 2, 1))[None])
    return explicit, outer
