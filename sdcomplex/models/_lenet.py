"""LeNet-5 with a width multiplier (the paper's LeNet-5x8 student)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from sdcomplex.models._common import check_input, check_int, max_pool
from sdcomplex.models._conv import patch_conv

Array = jax.Array


def lenet5_feature_size(height: int, width: int) -> tuple[int, int]:
    """Spatial size after LeNet-5's two (VALID conv5x5, maxpool2) stages.

    Args:
        height: input height in pixels.
        width: input width in pixels.

    Returns:
        ``(h, w)`` of the last feature map; ``h = ((height - 4) // 2 - 4) // 2``.

    Example:
        >>> lenet5_feature_size(32, 32)
        (5, 5)
    """
    return ((height - 4) // 2 - 4) // 2, ((width - 4) // 2 - 4) // 2


class LeNet5(nn.Module):
    """LeNet-5xk for NHWC images.

    ``conv5x5(6k) - ReLU - maxpool2 - conv5x5(16k) - ReLU - maxpool2 - dense(120k) - ReLU -
    dense(84k) - ReLU - dense(C)``, with VALID (unpadded) convolutions and biases everywhere,
    default Flax initialisers (LeCun-normal kernels, zero biases). No BatchNorm, so the
    variable dict holds only ``'params'``. With ``width = 8`` on 32x32x3 inputs and 10 classes
    it has 3,882,858 parameters (the paper's "about 3.9 M" student).

    Attributes:
        num_classes: number of output logits ``C`` (>= 1).
        width: the multiplier ``k`` (>= 1).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> model = LeNet5(num_classes=10, width=1)
        >>> x = jnp.zeros((2, 32, 32, 3), jnp.float32)
        >>> variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)  # shapes only
        >>> jax.eval_shape(model.apply, variables, x).shape  # model.init/apply: the values
        (2, 10)
    """

    num_classes: int
    width: int = 1

    def __post_init__(self) -> None:
        check_int("LeNet5", "num_classes", self.num_classes)
        check_int("LeNet5", "width", self.width)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        """Computes logits.

        Args:
            x: float images of shape ``(batch, H, W, channels)`` with ``H, W >= 16``.
            train: unused (no BatchNorm or dropout); accepted for the common interface.

        Returns:
            Logits of shape ``(batch, num_classes)`` in the input/parameter dtype (float32).
        """
        del train
        x = check_input("LeNet5", x, (4,), "(batch, height, width, channels)")
        h, w = lenet5_feature_size(x.shape[1], x.shape[2])
        if h < 1 or w < 1:
            raise ValueError(
                f"LeNet5 needs images of at least 16x16 pixels; got {x.shape[1]}x{x.shape[2]}"
            )
        k = self.width
        # `patch_conv`: on CPU the output and the weight gradient are patch-matrix products
        # (LeNet-5x8's training step 1.4x faster than with XLA's convolution, see
        # benchmarks/README.md); on other platforms lax's convolution. Same parameters.
        conv = patch_conv
        x = nn.Conv(6 * k, (5, 5), padding="VALID", conv_general_dilated=conv, name="conv1")(x)
        x = max_pool(jax.nn.relu(x), 2, spatial=2)
        x = nn.Conv(16 * k, (5, 5), padding="VALID", conv_general_dilated=conv, name="conv2")(x)
        x = max_pool(jax.nn.relu(x), 2, spatial=2)
        x = jnp.reshape(x, (x.shape[0], -1))
        x = jax.nn.relu(nn.Dense(120 * k, name="fc1")(x))
        x = jax.nn.relu(nn.Dense(84 * k, name="fc2")(x))
        return nn.Dense(self.num_classes, name="logits")(x)
