"""MobileNet-V3 (Howard et al., 2019, "Searching for MobileNetV3") with width multipliers.

Structure and channel rounding follow the reference implementations (torchvision's
``mobilenet_v3_large`` / TF-Slim / Keras ``MobileNetV3Large``): every channel count of the
paper's tables 1-2 is scaled by the width multiplier and rounded by :func:`make_divisible`;
squeeze-excite has ``make_divisible(exp / 4)`` hidden units. At multiplier 1.0 with 1000
classes our Large has exactly torchvision's 5,483,032 parameters (published: 5.4 M) and
our Small torchvision's 2,542,856 (published: 2.5 M).

Choices for the classifier head and small images (documented in :class:`MobileNetV3`):

* the last 1x1 "point" layer (1280 for Large, 1024 for Small) is scaled only when the
  multiplier is > 1 (the paper's / TF-Slim's / Keras' rule; torchvision also shrinks it for
  multipliers < 1). With it Large 0.75 has 3,928,296 parameters (published: 4.0 M; TF-Slim
  rounds the expanded widths as ``make_divisible(a * c_in * ratio)``, which differs slightly).
* ``stem_stride`` defaults to 1 instead of ImageNet's 2: with 4 further stride-2 stages,
  a 32x32 (64x64) input then ends at 2x2 (4x4) instead of 1x1 (2x2).
* no dropout before the classifier (the zoo's models are deterministic functions).
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from sdcomplex.models._common import (
    check_choice,
    check_fraction,
    check_input,
    check_int,
    check_positive_float,
)

Array = jax.Array


class BlockSpec(NamedTuple):
    """One inverted-residual block of the paper's tables (unscaled channel counts)."""

    in_channels: int
    kernel: int
    expanded: int
    out_channels: int
    squeeze_excite: bool
    hard_swish: bool
    stride: int


_B = BlockSpec
#: Table 1 of Howard et al. (2019): MobileNetV3-Large.
LARGE_BLOCKS: tuple[BlockSpec, ...] = (
    _B(16, 3, 16, 16, False, False, 1),
    _B(16, 3, 64, 24, False, False, 2),
    _B(24, 3, 72, 24, False, False, 1),
    _B(24, 5, 72, 40, True, False, 2),
    _B(40, 5, 120, 40, True, False, 1),
    _B(40, 5, 120, 40, True, False, 1),
    _B(40, 3, 240, 80, False, True, 2),
    _B(80, 3, 200, 80, False, True, 1),
    _B(80, 3, 184, 80, False, True, 1),
    _B(80, 3, 184, 80, False, True, 1),
    _B(80, 3, 480, 112, True, True, 1),
    _B(112, 3, 672, 112, True, True, 1),
    _B(112, 5, 672, 160, True, True, 2),
    _B(160, 5, 960, 160, True, True, 1),
    _B(160, 5, 960, 160, True, True, 1),
)
#: Table 2 of Howard et al. (2019): MobileNetV3-Small.
SMALL_BLOCKS: tuple[BlockSpec, ...] = (
    _B(16, 3, 16, 16, True, False, 2),
    _B(16, 3, 72, 24, False, False, 2),
    _B(24, 3, 88, 24, False, False, 1),
    _B(24, 5, 96, 40, True, True, 2),
    _B(40, 5, 240, 40, True, True, 1),
    _B(40, 5, 240, 40, True, True, 1),
    _B(40, 5, 120, 48, True, True, 1),
    _B(48, 5, 144, 48, True, True, 1),
    _B(48, 5, 288, 96, True, True, 2),
    _B(96, 5, 576, 96, True, True, 1),
    _B(96, 5, 576, 96, True, True, 1),
)
_VARIANTS = {"large": (LARGE_BLOCKS, 1280), "small": (SMALL_BLOCKS, 1024)}


def make_divisible(value: float, divisor: int = 8) -> int:
    """Rounds a scaled channel count to a multiple of ``divisor`` (MobileNet rule).

    Rounds to the nearest multiple (at least ``divisor``) and adds one ``divisor`` if that
    lost more than 10% of ``value``.

    Example:
        >>> make_divisible(16 * 0.35), make_divisible(18), make_divisible(160 * 1.25)
        (8, 24, 200)
    """
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


class MobileNetV3(nn.Module):
    """MobileNet-V3 Large/Small with a width multiplier, for small (CIFAR / Tiny ImageNet) images.

    Stem ``conv3x3(16a, stride=stem_stride) - BN - h-swish``; the inverted-residual blocks of
    the paper's table (``[1x1 expand - BN - act] - depthwise kxk - BN - act - [SE] - 1x1 project
    - BN`` with an identity shortcut when shape is kept); ``conv1x1(6 * last) - BN - h-swish``;
    global average pooling; ``dense(head) - h-swish - dense(C)``. SE is ``x * hard_sigmoid(
    dense(relu(dense(mean_hw(x)))))``. Convolutions have no bias and He-normal (fan-out) init,
    dense layers N(0, 0.01) weights and zero biases, as in torchvision.

    Parameter counts (``count_params``), input-size independent:

    =================  ============  ============  =====================
    variant / width    10 classes    200 classes   1000 classes
    =================  ============  ============  =====================
    Large 0.35         841,258       1,084,648     2,109,448
    Large 1.0          4,214,842     4,458,232     5,483,032 (published 5.4 M)
    Large 1.25         6,579,754     6,883,944     8,164,744
    Small 0.35         336,146       530,896       1,350,896
    Small 1.0          1,528,106     1,722,856     2,542,856 (published 2.5 M)
    Small 1.25         2,376,722     2,620,112     3,644,912
    =================  ============  ============  =====================

    No figure is published for 0.35 / 1.25 (the paper's table 3 lists 1.0 and 0.75); most of
    the parameters of the 0.35 network sit in the unscaled 1280-wide head.

    Attributes:
        num_classes: number of logits ``C``.
        width_multiplier: the paper's multiplier (0.35 and 1.25 in the distillation paper).
        variant: ``"large"`` (default) or ``"small"``.
        stem_stride: stride of the stem convolution: 1 (default, for 32x32 / 64x64 inputs) or 2
            (the ImageNet network).
        head_width: width of the penultimate dense layer; ``None`` = 1280 (Large) / 1024 (Small),
            scaled by ``width_multiplier`` when it is > 1.
        bn_momentum: BatchNorm momentum, Flax convention (0.99 = torchvision's 0.01).
        bn_epsilon: BatchNorm epsilon (1e-3 as in the reference implementations).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> model = MobileNetV3(num_classes=10, width_multiplier=0.35, head_width=32)
        >>> x = jnp.zeros((2, 32, 32, 3), jnp.float32)
        >>> variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)  # shapes only
        >>> jax.eval_shape(model.apply, variables, x).shape  # model.init/apply: the values
        (2, 10)
    """

    num_classes: int
    width_multiplier: float = 1.0
    variant: str = "large"
    stem_stride: int = 1
    head_width: int | None = None
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3

    def __post_init__(self) -> None:
        check_int("MobileNetV3", "num_classes", self.num_classes)
        check_positive_float("MobileNetV3", "width_multiplier", self.width_multiplier)
        check_choice("MobileNetV3", "variant", self.variant, tuple(_VARIANTS))
        check_choice("MobileNetV3", "stem_stride", self.stem_stride, (1, 2))
        if self.head_width is not None:
            check_int("MobileNetV3", "head_width", self.head_width)
        check_fraction("MobileNetV3", "bn_momentum", self.bn_momentum)
        if not self.bn_epsilon > 0:
            raise ValueError(f"MobileNetV3: bn_epsilon must be > 0, got {self.bn_epsilon}")
        super().__post_init__()

    def _channels(self, c: int) -> int:
        return make_divisible(c * self.width_multiplier)

    def _head_width(self) -> int:
        if self.head_width is not None:
            return self.head_width
        base = _VARIANTS[self.variant][1]
        return self._channels(base) if self.width_multiplier > 1.0 else base

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        """Computes logits.

        Args:
            x: float images ``(batch, H, W, channels)``.
            train: BatchNorm mode: batch statistics and ``batch_stats`` updates (call with
                ``mutable=['batch_stats']``) if True, running averages (pure) if False.

        Returns:
            Logits ``(batch, num_classes)``.
        """
        x = check_input("MobileNetV3", x, (4,), "(batch, height, width, channels)")
        conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
        dense_init = nn.initializers.normal(0.01)
        counter = iter(range(10_000))

        def conv(y: Array, features: int, kernel: int, stride: int = 1, groups: int = 1) -> Array:
            pad = (kernel - 1) // 2
            return nn.Conv(
                features,
                (kernel, kernel),
                strides=(stride, stride),
                padding=((pad, pad), (pad, pad)),
                feature_group_count=groups,
                use_bias=False,
                kernel_init=conv_init,
                name=f"conv{next(counter)}",
            )(y)

        def norm(y: Array) -> Array:
            return nn.BatchNorm(
                use_running_average=not train,
                momentum=self.bn_momentum,
                epsilon=self.bn_epsilon,
            )(y)

        blocks, _ = _VARIANTS[self.variant]
        x = jax.nn.hard_swish(norm(conv(x, self._channels(16), 3, self.stem_stride)))
        for i, spec in enumerate(blocks):
            act = jax.nn.hard_swish if spec.hard_swish else jax.nn.relu
            c_in = self._channels(spec.in_channels)
            c_exp = self._channels(spec.expanded)
            c_out = self._channels(spec.out_channels)
            if x.shape[-1] != c_in:  # guards the table against typos
                raise AssertionError(f"block {i}: expected {c_in} channels, got {x.shape[-1]}")
            y = x
            if c_exp != c_in:
                y = act(norm(conv(y, c_exp, 1)))
            y = act(norm(conv(y, c_exp, spec.kernel, spec.stride, groups=c_exp)))
            if spec.squeeze_excite:
                s = jnp.mean(y, axis=(1, 2))
                s = jax.nn.relu(nn.Dense(make_divisible(c_exp // 4), name=f"se{i}_reduce")(s))
                s = jax.nn.hard_sigmoid(nn.Dense(c_exp, name=f"se{i}_expand")(s))
                y = y * s[:, None, None, :]
            y = norm(conv(y, c_out, 1))
            x = x + y if (spec.stride == 1 and c_in == c_out) else y
        last = 6 * self._channels(blocks[-1].out_channels)
        x = jax.nn.hard_swish(norm(conv(x, last, 1)))
        x = jnp.mean(x, axis=(1, 2))
        x = jax.nn.hard_swish(nn.Dense(self._head_width(), kernel_init=dense_init, name="head")(x))
        return nn.Dense(self.num_classes, kernel_init=dense_init, name="logits")(x)
