"""XLA:CPU convolution forward, input gradient and weight gradient, op by op.

Times ``lax.conv_general_dilated`` and its two gradients (each jitted alone, best of 3) for the
convolutions that dominate LeNet-5x8 and ResNet-20 training on CIFAR shapes, and the weight
gradient rewritten as a patch matrix times the output cotangent (the same numbers, checked).

    python benchmarks/conv_gradients.py   # about 1 minute
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

DIMENSIONS = ("NHWC", "HWIO", "NHWC")
SHAPES = (  # batch, height = width, in channels, out channels, kernel, padding
    (128, 14, 48, 128, 5, "VALID"),  # LeNet-5x8 conv2
    (128, 32, 3, 48, 5, "VALID"),  # LeNet-5x8 conv1
    (128, 32, 16, 16, 3, "SAME"),  # ResNet-20 stage 1
    (640, 32, 16, 16, 3, "SAME"),  # ResNet-20 stage 1, 10 logits x 64 examples (NTK)
    (640, 8, 64, 64, 3, "SAME"),  # ResNet-20 stage 3, likewise
)


def best_time(f, *args, repeats: int = 3) -> float:
    jax.block_until_ready(f(*args))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(f(*args))
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    rng = np.random.default_rng(0)
    print(f"jax {jax.__version__}, {jax.default_backend()}; milliseconds, best of 3")
    for b, h, cin, cout, k, pad in SHAPES:
        x = jnp.asarray(rng.normal(size=(b, h, h, cin)), jnp.float32)
        w = jnp.asarray(rng.normal(size=(k, k, cin, cout)), jnp.float32)

        def conv(x, w, pad=pad):
            return lax.conv_general_dilated(x, w, (1, 1), pad, dimension_numbers=DIMENSIONS)

        y = conv(x, w)
        g = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
        ho = y.shape[1]
        forward = jax.jit(conv)
        dgrad = jax.jit(lambda g, w, x, conv=conv: jax.vjp(lambda v: conv(v, w), x)[1](g)[0])
        wgrad = jax.jit(lambda g, x, w, conv=conv: jax.vjp(lambda v: conv(x, v), w)[1](g)[0])

        def wgrad_patches(g, x, k=k, pad=pad, cin=cin, cout=cout, ho=ho):
            p = (k - 1) // 2 if pad == "SAME" else 0
            xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
            cols = [xp[:, i : i + ho, j : j + ho, :] for i in range(k) for j in range(k)]
            patches = jnp.stack(cols, axis=3).reshape(-1, k * k * cin)
            return jnp.dot(patches.T, g.reshape(-1, cout)).reshape(k, k, cin, cout)

        patched = jax.jit(wgrad_patches)
        reference = wgrad(g, x, w)
        err = float(jnp.max(jnp.abs(patched(g, x) - reference)) / jnp.max(jnp.abs(reference)))
        gflop = 2 * b * ho * ho * k * k * cin * cout / 1e9
        times = [best_time(f, *a) * 1e3 for f, a in ((forward, (x, w)), (dgrad, (g, w, x)))]
        times += [best_time(wgrad, g, x, w) * 1e3, best_time(patched, g, x) * 1e3]
        print(
            f"batch {b:3d} {h}x{h} {cin:2d}->{cout:3d} {k}x{k} ({gflop:.2f} GFLOP each): "
            f"forward {times[0]:5.0f}, input grad {times[1]:5.0f}, weight grad {times[2]:5.0f}, "
            f"weight grad as patches @ g {times[3]:5.0f} (rel. diff {err:.0e})",
            flush=True,
        )


if __name__ == "__main__":
    main()
