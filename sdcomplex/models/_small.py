"""Small, fast models for tests and toy experiments: an MLP and a 1-D/2-D CNN."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from sdcomplex.models._common import (
    ACTIVATIONS,
    check_choice,
    check_input,
    check_int,
    check_int_sequence,
    max_pool,
)

Array = jax.Array


class MLP(nn.Module):
    """Fully connected network on flattened inputs.

    ``x -> flatten -> [dense(h_i) - act]_i -> dense(C)`` with Flax default initialisers
    (LeCun-normal weights, zero biases). Any input ``(batch, ...)`` is flattened to
    ``(batch, d)``.

    Attributes:
        num_classes: number of logits ``C``.
        hidden_sizes: widths of the hidden layers (``()`` gives a linear model).
        activation: one of ``"relu"``, ``"gelu"``, ``"tanh"``, ``"softplus"``, ``"swish"``,
            ``"erf"``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> model = MLP(num_classes=3, hidden_sizes=(8,))
        >>> x = jnp.ones((4, 40), jnp.float32)
        >>> variables = model.init(jax.random.PRNGKey(0), x)
        >>> model.apply(variables, x).shape
        (4, 3)
    """

    num_classes: int
    hidden_sizes: tuple[int, ...] = (256, 256)
    activation: str = "relu"

    def __post_init__(self) -> None:
        check_int("MLP", "num_classes", self.num_classes)
        check_int_sequence("MLP", "hidden_sizes", self.hidden_sizes)
        check_choice("MLP", "activation", self.activation, tuple(ACTIVATIONS))
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        """Computes logits.

        Args:
            x: float inputs ``(batch, ...)`` (at least 2-D).
            train: unused; accepted for the common interface.

        Returns:
            Logits ``(batch, num_classes)``.
        """
        del train
        x = check_input("MLP", x, (2, 3, 4, 5), "(batch, ...) with at least one feature axis")
        act = ACTIVATIONS[self.activation]
        x = jnp.reshape(x, (x.shape[0], -1))
        for i, h in enumerate(self.hidden_sizes):
            x = act(nn.Dense(h, name=f"hidden{i + 1}")(x))
        return nn.Dense(self.num_classes, name="logits")(x)


class SmallCNN(nn.Module):
    """A small convolutional network for 1-D signals and 2-D images.

    Input layouts: ``(batch, length)`` (one channel, e.g. MNIST-1D's ``(n, 40)``),
    ``(batch, length, channels)`` or ``(batch, H, W, channels)``; the convolution is 1-D for the
    first two and 2-D for the last. Architecture: ``[conv(k, c_i, SAME) - [BN] - act -
    maxpool2]_i - flatten - [dense(dense_width) - act] - dense(C)``. Pooling uses SAME padding,
    so any length >= 1 works (a length-40 signal becomes 20, then 10).

    Attributes:
        num_classes: number of logits ``C``.
        channels: output channels of the convolutional layers.
        kernel_size: kernel length (1-D) or side (2-D).
        dense_width: width of the hidden dense layer; ``None`` to go straight to the logits.
        activation: see :class:`MLP`.
        batch_norm: insert BatchNorm after each convolution (then the variables contain
            ``'batch_stats'`` and ``train`` selects batch vs running statistics).
        bn_momentum: BatchNorm momentum (Flax convention).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> model = SmallCNN(num_classes=10, channels=(4,), dense_width=None)
        >>> x = jnp.ones((2, 40), jnp.float32)
        >>> variables = model.init(jax.random.PRNGKey(0), x)
        >>> model.apply(variables, x).shape
        (2, 10)
    """

    num_classes: int
    channels: tuple[int, ...] = (16, 32)
    kernel_size: int = 3
    dense_width: int | None = 64
    activation: str = "relu"
    batch_norm: bool = False
    bn_momentum: float = 0.9

    def __post_init__(self) -> None:
        check_int("SmallCNN", "num_classes", self.num_classes)
        check_int_sequence("SmallCNN", "channels", self.channels, allow_empty=False)
        check_int("SmallCNN", "kernel_size", self.kernel_size)
        if self.dense_width is not None:
            check_int("SmallCNN", "dense_width", self.dense_width)
        check_choice("SmallCNN", "activation", self.activation, tuple(ACTIVATIONS))
        if not isinstance(self.batch_norm, bool):
            raise TypeError(f"SmallCNN: batch_norm must be a bool, got {self.batch_norm!r}")
        if not 0.0 <= self.bn_momentum < 1.0:
            raise ValueError(f"SmallCNN: bn_momentum must lie in [0, 1), got {self.bn_momentum}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        """Computes logits.

        Args:
            x: float inputs ``(batch, L)``, ``(batch, L, C)`` or ``(batch, H, W, C)``.
            train: BatchNorm mode when ``batch_norm=True`` (otherwise unused).

        Returns:
            Logits ``(batch, num_classes)``.
        """
        x = check_input(
            "SmallCNN",
            x,
            (2, 3, 4),
            "(batch, length), (batch, length, channels) or (batch, H, W, C)",
        )
        if x.ndim == 2:
            x = x[..., None]
        spatial = x.ndim - 2
        act = ACTIVATIONS[self.activation]
        for i, c in enumerate(self.channels):
            x = nn.Conv(c, (self.kernel_size,) * spatial, padding="SAME", name=f"conv{i + 1}")(x)
            if self.batch_norm:
                x = nn.BatchNorm(
                    use_running_average=not train, momentum=self.bn_momentum, name=f"bn{i + 1}"
                )(x)
            x = max_pool(act(x), 2, spatial=spatial, padding="SAME")
        x = jnp.reshape(x, (x.shape[0], -1))
        if self.dense_width is not None:
            x = act(nn.Dense(self.dense_width, name="hidden")(x))
        return nn.Dense(self.num_classes, name="logits")(x)
