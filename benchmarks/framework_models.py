"""The zoo's LeNet-5x8 and CIFAR ResNet-20 written in Flax NNX and in Equinox, as ``(fn, params)``.

Used by benchmarks/ntk_any_model.py. Each builder returns ``(fn, params)`` for `empirical_ntk`
(``fn(params, x)``: (n, 32, 32, 3) float32 images to (n, C) logits), with the framework's own
initialisation (seed 0):

* LeNet-5x8: ``nnx.split`` / ``nnx.merge`` and ``eqx.partition`` / ``eqx.combine`` (with
  ``jax.vmap`` over examples, channels-first) written out;
* ResNet-20: through `sdcomplex.ntk.ntk_fn`, which puts NNX's ``nnx.BatchNorm`` on its running
  statistics (``use_running_average=True``) and Equinox's stateful ``eqx.nn.BatchNorm`` in
  inference mode (``eqx.nn.inference_mode``; the ``eqx.nn.State`` from
  ``eqx.nn.make_with_state`` is held fixed inside ``fn``). Equinox's BatchNorm uses
  ``mode="batch"``, whose fresh running statistics are mean 0 / variance 1 as the zoo's
  (``mode="ema"`` holds uninitialised buffers until its first training step).

The ResNet-20 is the zoo's ``resnet20`` (sdcomplex.models.CifarResNet, depth 20): 3x3 stem
convolution (16 channels, no bias) - BatchNorm - ReLU, three stages of three basic blocks
(16, 32, 64 channels; the first block of stages 2 and 3 has stride 2), each block
``relu(BN(conv3x3(relu(BN(conv3x3_s(x))))) + shortcut(x))`` with the option-A shortcut
(``x[::s, ::s]`` zero-padded to the new channel count, split evenly), global average pooling,
``dense(C)``. BatchNorm epsilon 1e-5 everywhere, as the zoo's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax_models import max_pool

from sdcomplex.ntk import ntk_fn

NUM_CLASSES = 10
WIDTH = 16
BLOCKS_PER_STAGE = 3
EPSILON = 1e-5


def _option_a(x, stride: int, features: int, channel_axis: int):
    """Option-A shortcut: subsample spatially, zero-pad the channels (lo = extra // 2)."""
    extra = features - x.shape[channel_axis]
    spatial = (1, 2) if channel_axis == 0 else (-3, -2)
    index = [slice(None)] * x.ndim
    for axis in spatial:
        index[axis] = slice(None, None, stride)
    pad = [(0, 0)] * x.ndim
    pad[channel_axis] = (extra // 2, extra - extra // 2)
    return jnp.pad(x[tuple(index)], pad)


def _stages():
    """(stage, block, in_features, features, stride) of the 9 basic blocks."""
    out, in_features = [], WIDTH
    for stage in range(3):
        features = WIDTH * 2**stage
        for block in range(BLOCKS_PER_STAGE):
            stride = 2 if (stage > 0 and block == 0) else 1
            out.append((stage, block, in_features, features, stride))
            in_features = features
    return out


# --- LeNet-5x8 --------------------------------------------------------------------------------


def lenet5_nnx(width: int = 8):
    from flax import nnx

    class LeNet(nnx.Module):
        def __init__(self, rngs):
            k = width
            self.conv1 = nnx.Conv(3, 6 * k, (5, 5), padding="VALID", rngs=rngs)
            self.conv2 = nnx.Conv(6 * k, 16 * k, (5, 5), padding="VALID", rngs=rngs)
            self.fc1 = nnx.Linear(16 * k * 25, 120 * k, rngs=rngs)
            self.fc2 = nnx.Linear(120 * k, 84 * k, rngs=rngs)
            self.logits = nnx.Linear(84 * k, NUM_CLASSES, rngs=rngs)

        def __call__(self, x):
            x = max_pool(jax.nn.relu(self.conv1(x)))
            x = max_pool(jax.nn.relu(self.conv2(x)))
            x = jax.nn.relu(self.fc1(x.reshape(x.shape[0], -1)))
            return self.logits(jax.nn.relu(self.fc2(x)))

    graphdef, params, rest = nnx.split(LeNet(nnx.Rngs(0)), nnx.Param, ...)

    def fn(p, x):
        return nnx.merge(graphdef, p, rest)(x)

    return fn, params


def lenet5_equinox(width: int = 8):
    import equinox as eqx

    k = width
    keys = jax.random.split(jax.random.key(0), 5)

    class LeNet(eqx.Module):
        layers: tuple

        def __call__(self, x):  # one example, (H, W, C) -> logits
            conv1, conv2, fc1, fc2, out = self.layers
            h = jnp.transpose(x, (2, 0, 1))
            h = eqx.nn.MaxPool2d(2, 2)(jax.nn.relu(conv1(h)))
            h = eqx.nn.MaxPool2d(2, 2)(jax.nn.relu(conv2(h)))
            h = jax.nn.relu(fc1(h.reshape(-1)))
            return out(jax.nn.relu(fc2(h)))

    model = LeNet(
        (
            eqx.nn.Conv2d(3, 6 * k, 5, key=keys[0]),
            eqx.nn.Conv2d(6 * k, 16 * k, 5, key=keys[1]),
            eqx.nn.Linear(16 * k * 25, 120 * k, key=keys[2]),
            eqx.nn.Linear(120 * k, 84 * k, key=keys[3]),
            eqx.nn.Linear(84 * k, NUM_CLASSES, key=keys[4]),
        )
    )
    params, static = eqx.partition(model, eqx.is_array)

    def fn(p, x):
        return jax.vmap(eqx.combine(p, static))(x)

    return fn, params


# --- ResNet-20 --------------------------------------------------------------------------------


def resnet20_nnx():
    """ResNet-20 as an NNX module (NHWC, ``nnx.Conv`` / ``nnx.BatchNorm``), via `ntk_fn`."""
    from flax import nnx

    def conv(cin, cout, stride, rngs):
        return nnx.Conv(
            cin,
            cout,
            (3, 3),
            strides=(stride, stride),
            padding=((1, 1), (1, 1)),
            use_bias=False,
            kernel_init=nnx.initializers.he_normal(),
            rngs=rngs,
        )

    def norm(features, rngs):
        return nnx.BatchNorm(features, momentum=0.9, epsilon=EPSILON, rngs=rngs)

    class Block(nnx.Module):
        def __init__(self, cin, cout, stride, rngs):
            self.conv1, self.bn1 = conv(cin, cout, stride, rngs), norm(cout, rngs)
            self.conv2, self.bn2 = conv(cout, cout, 1, rngs), norm(cout, rngs)
            self.stride, self.features = stride, cout

        def __call__(self, x):
            y = jax.nn.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            shortcut = x
            if self.stride != 1 or x.shape[-1] != self.features:
                shortcut = _option_a(x, self.stride, self.features, channel_axis=-1)
            return jax.nn.relu(y + shortcut)

    class ResNet(nnx.Module):
        def __init__(self, rngs):
            self.stem_conv, self.stem_bn = conv(3, WIDTH, 1, rngs), norm(WIDTH, rngs)
            self.blocks = nnx.List([Block(cin, cout, s, rngs) for _, _, cin, cout, s in _stages()])
            self.logits = nnx.Linear(4 * WIDTH, NUM_CLASSES, rngs=rngs)

        def __call__(self, x):
            x = jax.nn.relu(self.stem_bn(self.stem_conv(x)))
            for block in self.blocks:
                x = block(x)
            return self.logits(jnp.mean(x, axis=(1, 2)))

    return ntk_fn(ResNet(nnx.Rngs(0)))


def resnet20_equinox():
    """ResNet-20 as a stateful Equinox module (per example, CHW), via `ntk_fn(model, state)`."""
    import equinox as eqx

    def conv(cin, cout, stride, key):
        return eqx.nn.Conv2d(cin, cout, 3, stride=stride, padding=1, use_bias=False, key=key)

    def norm(features):
        return eqx.nn.BatchNorm(features, "batch", eps=EPSILON, momentum=0.9, mode="batch")

    class Block(eqx.Module):
        conv1: eqx.nn.Conv2d
        bn1: eqx.nn.BatchNorm
        conv2: eqx.nn.Conv2d
        bn2: eqx.nn.BatchNorm
        stride: int = eqx.field(static=True)
        features: int = eqx.field(static=True)

        def __init__(self, cin, cout, stride, key):
            k1, k2 = jax.random.split(key)
            self.conv1, self.bn1 = conv(cin, cout, stride, k1), norm(cout)
            self.conv2, self.bn2 = conv(cout, cout, 1, k2), norm(cout)
            self.stride, self.features = stride, cout

        def __call__(self, x, state):
            y, state = self.bn1(self.conv1(x), state)
            y, state = self.bn2(self.conv2(jax.nn.relu(y)), state)
            shortcut = x
            if self.stride != 1 or x.shape[0] != self.features:
                shortcut = _option_a(x, self.stride, self.features, channel_axis=0)
            return jax.nn.relu(y + shortcut), state

    class ResNet(eqx.Module):
        stem_conv: eqx.nn.Conv2d
        stem_bn: eqx.nn.BatchNorm
        blocks: tuple
        logits: eqx.nn.Linear

        def __init__(self, key):
            keys = jax.random.split(key, 2 + 3 * BLOCKS_PER_STAGE)
            self.stem_conv, self.stem_bn = conv(3, WIDTH, 1, keys[0]), norm(WIDTH)
            self.blocks = tuple(
                Block(cin, cout, s, k)
                for (_, _, cin, cout, s), k in zip(_stages(), keys[2:], strict=True)
            )
            self.logits = eqx.nn.Linear(4 * WIDTH, NUM_CLASSES, key=keys[1])

        def __call__(self, x, state):  # one example, (H, W, C) -> (logits, state)
            h, state = self.stem_bn(self.stem_conv(jnp.transpose(x, (2, 0, 1))), state)
            h = jax.nn.relu(h)
            for block in self.blocks:
                h, state = block(h, state)
            return self.logits(jnp.mean(h, axis=(1, 2))), state

    model, state = eqx.nn.make_with_state(ResNet)(jax.random.key(0))
    return ntk_fn(model, state)
