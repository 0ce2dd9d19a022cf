"""CIFAR ResNet-(6m+2) of He et al. (2016), "Deep residual learning", section 4.2."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from sdcomplex.models._common import check_choice, check_fraction, check_input, check_int

Array = jax.Array

#: He-normal (fan-in, truncated normal) initialiser used for every convolution.
_conv_init = nn.initializers.he_normal()


def _conv3x3(features: int, name: str, strides: int = 1) -> nn.Conv:
    """A 3x3 convolution with 1-pixel zero padding, no bias and He-normal init."""
    return nn.Conv(
        features,
        (3, 3),
        strides=(strides, strides),
        padding=((1, 1), (1, 1)),
        use_bias=False,
        kernel_init=_conv_init,
        name=name,
    )


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and a residual shortcut.

    ``y = relu(BN(conv3x3(relu(BN(conv3x3_s(x))))) + shortcut(x))``. When the block changes
    the shape (``stride = 2`` or a new channel count) the shortcut is

    * option ``"A"``: ``x[:, ::s, ::s, :]`` zero-padded to the new channel count (no
      parameters; He et al.'s choice for CIFAR), or
    * option ``"B"``: a strided 1x1 convolution followed by BatchNorm (a projection).

    Attributes:
        features: output channels.
        strides: spatial stride of the first convolution (1 or 2).
        shortcut: ``"A"`` or ``"B"``.
        bn_momentum: BatchNorm running-average momentum (Flax convention: ``new = m * old +
            (1 - m) * batch``).
        bn_epsilon: BatchNorm epsilon.
    """

    features: int
    strides: int = 1
    shortcut: str = "A"
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        """Applies the block to ``x`` of shape ``(batch, H, W, C_in)``.

        Returns:
            ``(batch, ceil(H / strides), ceil(W / strides), features)``.
        """

        def norm(name: str) -> nn.BatchNorm:
            return nn.BatchNorm(
                use_running_average=not train,
                momentum=self.bn_momentum,
                epsilon=self.bn_epsilon,
                name=name,
            )

        s = self.strides
        y = jax.nn.relu(norm("bn1")(_conv3x3(self.features, "conv1", s)(x)))
        y = norm("bn2")(_conv3x3(self.features, "conv2")(y))

        in_features = x.shape[-1]
        if s == 1 and in_features == self.features:
            shortcut = x
        elif self.shortcut == "A":
            shortcut = x[:, ::s, ::s, :]
            extra = self.features - in_features
            if extra < 0:
                raise ValueError(
                    "option-A shortcut cannot reduce channels "
                    f"({in_features} -> {self.features}); use shortcut='B'"
                )
            lo = extra // 2
            shortcut = jnp.pad(shortcut, ((0, 0), (0, 0), (0, 0), (lo, extra - lo)))
        else:
            shortcut = nn.Conv(
                self.features,
                (1, 1),
                strides=(s, s),
                use_bias=False,
                kernel_init=_conv_init,
                name="proj_conv",
            )(x)
            shortcut = norm("proj_bn")(shortcut)
        return jax.nn.relu(y + shortcut)


class CifarResNet(nn.Module):
    """CIFAR ResNet-(6m+2): the 3-stage residual network of He et al. (2016), section 4.2.

    ``conv3x3(w) - BN - ReLU``, then 3 stages of ``m = (depth - 2) / 6`` basic blocks with
    ``w, 2w, 4w`` channels (``w = 16`` by default); the first block of stages 2 and 3 has stride
    2, so a 32x32 input gives feature maps of 32x32, 16x16 and 8x8. Then global average pooling
    and ``dense(C)``. Convolutions have no bias and He-normal init; BatchNorm scale 1 / bias 0;
    the final dense layer uses Flax defaults.

    Shortcuts default to option A (parameter-free zero-padded identity), as in He et al. for
    CIFAR; with it ResNet-20/56/110 on 10 classes have 269,722 / 853,018 / 1,727,962
    parameters (the usual "0.27 M / 0.85 M / 1.7 M"). Option B (1x1 projection + BN on the two
    shape-changing blocks) adds ``w*2w + 2w*4w + 2*(2w + 4w) = 10 w^2 + 12 w`` parameters
    (2,752 for ``w = 16``).

    Attributes:
        num_classes: number of logits ``C``.
        depth: ``6m + 2`` with ``m >= 1`` (20, 32, 44, 56, 110, ...).
        width: channels of the first stage (16 in the paper).
        shortcut: ``"A"`` (zero-pad identity) or ``"B"`` (projection).
        bn_momentum: BatchNorm momentum in Flax's convention (0.9 = PyTorch's 0.1).
        bn_epsilon: BatchNorm epsilon.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> model = CifarResNet(num_classes=10, depth=8, width=4)
        >>> x = jnp.zeros((2, 32, 32, 3), jnp.float32)
        >>> variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)  # shapes only
        >>> sorted(variables)
        ['batch_stats', 'params']
        >>> jax.eval_shape(model.apply, variables, x).shape  # model.init/apply: the values
        (2, 10)
    """

    num_classes: int
    depth: int = 20
    width: int = 16
    shortcut: str = "A"
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5

    def __post_init__(self) -> None:
        check_int("CifarResNet", "num_classes", self.num_classes)
        check_int("CifarResNet", "depth", self.depth, minimum=8)
        if (self.depth - 2) % 6 != 0:
            raise ValueError(
                f"CifarResNet: depth must be 6m + 2 (20, 32, 44, 56, 110, ...), got {self.depth}"
            )
        check_int("CifarResNet", "width", self.width)
        check_choice("CifarResNet", "shortcut", self.shortcut, ("A", "B"))
        check_fraction("CifarResNet", "bn_momentum", self.bn_momentum)
        if not self.bn_epsilon > 0:
            raise ValueError(f"CifarResNet: bn_epsilon must be > 0, got {self.bn_epsilon}")
        super().__post_init__()

    @property
    def blocks_per_stage(self) -> int:
        """``m = (depth - 2) / 6``."""
        return (self.depth - 2) // 6

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        """Computes logits.

        Args:
            x: float images ``(batch, H, W, channels)``.
            train: if True BatchNorm normalises with batch statistics and updates
                ``batch_stats`` (call with ``mutable=['batch_stats']``); if False it uses the
                running averages and the call is a pure function of ``(variables, x)``.

        Returns:
            Logits ``(batch, num_classes)``.
        """
        x = check_input("CifarResNet", x, (4,), "(batch, height, width, channels)")
        x = _conv3x3(self.width, "stem_conv")(x)
        x = nn.BatchNorm(
            use_running_average=not train,
            momentum=self.bn_momentum,
            epsilon=self.bn_epsilon,
            name="stem_bn",
        )(x)
        x = jax.nn.relu(x)
        for stage in range(3):
            for block in range(self.blocks_per_stage):
                x = BasicBlock(
                    features=self.width * 2**stage,
                    strides=2 if (stage > 0 and block == 0) else 1,
                    shortcut=self.shortcut,
                    bn_momentum=self.bn_momentum,
                    bn_epsilon=self.bn_epsilon,
                    name=f"stage{stage + 1}_block{block + 1}",
                )(x, train=train)
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name="logits")(x)
