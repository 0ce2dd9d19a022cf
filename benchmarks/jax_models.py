"""The zoo's LeNet-5xk and CIFAR ResNet-(6m+2) as pure JAX functions of the zoo's parameter trees.

Shared by benchmarks/ntk_any_model.py (sdcomplex's environment) and benchmarks/nt_reference.py
(neural-tangents' environment, without sdcomplex): plain JAX only. ``precision`` is passed to
every convolution and matrix multiply (None: JAX's default; nt_reference uses
``lax.Precision.HIGHEST``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


def _conv(x, kernel, strides=(1, 1), padding="VALID", precision=None):
    return lax.conv_general_dilated(
        x,
        kernel,
        strides,
        padding,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=precision,
    )


def _dense(x, p, precision=None):
    return jnp.dot(x, p["kernel"], precision=precision) + p["bias"]


def max_pool(x):
    """2x2 max pooling with stride 2 (``reduce_window``), NHWC."""
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def lenet5(params, x, precision=None):
    """LeNet-5xk as sdcomplex.models.LeNet5 (VALID convolutions, biases everywhere)."""
    for name in ("conv1", "conv2"):
        x = _conv(x, params[name]["kernel"], precision=precision) + params[name]["bias"]
        x = max_pool(jax.nn.relu(x))
    x = x.reshape(x.shape[0], -1)
    x = jax.nn.relu(_dense(x, params["fc1"], precision))
    x = jax.nn.relu(_dense(x, params["fc2"], precision))
    return _dense(x, params["logits"], precision)


def _batch_norm(x, p, stats, epsilon=1e-5):
    return (x - stats["mean"]) * lax.rsqrt(stats["var"] + epsilon) * p["scale"] + p["bias"]


def resnet(params, stats, x, blocks_per_stage=3, width=16, precision=None):
    """CIFAR ResNet-(6m+2) as sdcomplex.models.CifarResNet (option A, inference BatchNorm)."""
    same = ((1, 1), (1, 1))
    x = _conv(x, params["stem_conv"]["kernel"], padding=same, precision=precision)
    x = jax.nn.relu(_batch_norm(x, params["stem_bn"], stats["stem_bn"]))
    for stage in range(3):
        for block in range(blocks_per_stage):
            name = f"stage{stage + 1}_block{block + 1}"
            p, s = params[name], stats[name]
            features = width * 2**stage
            stride = 2 if (stage > 0 and block == 0) else 1
            y = _conv(x, p["conv1"]["kernel"], (stride, stride), same, precision)
            y = jax.nn.relu(_batch_norm(y, p["bn1"], s["bn1"]))
            y = _conv(y, p["conv2"]["kernel"], padding=same, precision=precision)
            y = _batch_norm(y, p["bn2"], s["bn2"])
            shortcut = x
            if stride != 1 or x.shape[-1] != features:
                extra = features - x.shape[-1]
                shortcut = jnp.pad(
                    x[:, ::stride, ::stride, :],
                    ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)),
                )
            x = jax.nn.relu(y + shortcut)
    return _dense(jnp.mean(x, axis=(1, 2)), params["logits"], precision)
