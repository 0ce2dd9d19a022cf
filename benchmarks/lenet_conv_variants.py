"""LeNet-5x8 training step with three formulations of its convolutions (CPU experiment).

``conv``: ``flax.linen.Conv`` (what `sdcomplex.models` uses); ``slices``: each 5x5 VALID
convolution as a patch matrix (25 shifted slices concatenated on the channel axis) times a
dense kernel; ``patches``: the same with ``jax.lax.conv_general_dilated_patches``. Same maths
(the dense kernel is the convolution kernel reshaped), batch 128 of 32x32x3, SGD with momentum,
one jitted step; the variants alternate round by round. Prints ms per step (wall and process
CPU) and images/s.

    python benchmarks/lenet_conv_variants.py            # about 1 minute
    python benchmarks/lenet_conv_variants.py conv slices
"""

from __future__ import annotations

import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from sdcomplex.models._common import max_pool

BATCH, STEPS, ROUNDS = 128, 5, 3


def patches_by_slices(x: jax.Array, k: int) -> jax.Array:
    """(n, h, w, c) -> (n, h-k+1, w-k+1, k*k*c) VALID patches, (i, j, c) order."""
    ho, wo = x.shape[1] - k + 1, x.shape[2] - k + 1
    cols = [x[:, i : i + ho, j : j + wo, :] for i in range(k) for j in range(k)]
    return jnp.concatenate(cols, axis=-1)


def patches_by_lax(x: jax.Array, k: int) -> jax.Array:
    return jax.lax.conv_general_dilated_patches(
        x, (k, k), (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


class LeNetVariant(nn.Module):
    mode: str
    width: int = 8

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for features in (6 * self.width, 16 * self.width):
            if self.mode == "conv":
                x = nn.Conv(features, (5, 5), padding="VALID")(x)
            elif self.mode == "slices":
                x = nn.Dense(features)(patches_by_slices(x, 5))
            else:
                x = nn.Dense(features)(patches_by_lax(x, 5))
            x = max_pool(jax.nn.relu(x), 2, spatial=2)
        x = x.reshape(x.shape[0], -1)
        x = jax.nn.relu(nn.Dense(120 * self.width)(x))
        x = jax.nn.relu(nn.Dense(84 * self.width)(x))
        return nn.Dense(10)(x)


def main(modes: list[str]) -> None:
    tx = optax.sgd(0.01, momentum=0.9)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(BATCH, 32, 32, 3)), jnp.float32)
    y = jnp.arange(BATCH) % 10
    state = {}
    for mode in modes:
        model = LeNetVariant(mode)
        params = model.init(jax.random.key(0), x[:1])["params"]

        def loss(p, x, y, model=model):
            logits = model.apply({"params": p}, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        @jax.jit
        def step(p, o, x, y, loss=loss):
            value, grads = jax.value_and_grad(loss)(p, x, y)
            updates, o = tx.update(grads, o, p)
            return optax.apply_updates(p, updates), o, value

        opt = tx.init(params)
        params, opt, value = step(params, opt, x, y)  # compile
        value.block_until_ready()
        state[mode] = (step, params, opt)
    print(f"jax {jax.__version__}, {jax.default_backend()}, batch {BATCH}")
    for r in range(ROUNDS):
        for mode in modes:
            step, params, opt = state[mode]
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(STEPS):
                params, opt, value = step(params, opt, x, y)
            value.block_until_ready()
            wall = (time.perf_counter() - wall) / STEPS
            cpu = (time.process_time() - cpu) / STEPS
            state[mode] = (step, params, opt)
            print(
                f"round {r} {mode:8s} {1e3 * wall:6.1f} ms/step, {1e3 * cpu:6.1f} CPU-ms, "
                f"{BATCH / wall:5.0f} img/s",
                flush=True,
            )


if __name__ == "__main__":
    chosen = sys.argv[1:] or ["conv", "slices", "patches"]
    unknown = set(chosen) - {"conv", "slices", "patches"}
    if unknown:
        sys.exit(f"unknown variants: {', '.join(sorted(unknown))}")
    main(chosen)
