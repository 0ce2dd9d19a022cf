"""Data augmentation in JAX: random crop with zero padding, horizontal flip, normalisation.

All functions act on a whole batch ``(n, H, W, C)`` at once (``vmap`` over
``lax.dynamic_slice``; no Python loop over images), are jit-compiled, and are deterministic
functions of their PRNG key: the same key and images give the same output.

The standard CIFAR recipe (He et al., 2016) is :func:`augment_batch`: pad the raw image with 4
zero (black) pixels per side, crop a random ``H x W`` window, flip left-right with
probability 1/2, then normalise per channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp


def _check_images(images: jax.Array) -> tuple[int, int, int, int]:
    if images.ndim != 4:
        raise ValueError(f"images must be a (n, H, W, C) batch, got shape {images.shape}")
    n, h, w, c = images.shape
    return n, h, w, c


@partial(jax.jit, static_argnames=("padding",))
def random_crop(key: jax.Array, images: jax.Array, padding: int = 4) -> jax.Array:
    """Random crop of each image from its zero-padded copy.

    Image ``i`` is padded with ``padding`` zeros on every side and the ``H x W`` window at
    offset ``(dy_i, dx_i)``, drawn uniformly from ``{0, ..., 2 * padding}^2``, is kept: output
    pixel ``(y, x)`` is input pixel ``(y + dy_i - padding, x + dx_i - padding)``, or 0 outside.

    Args:
        key: PRNG key.
        images: ``(n, H, W, C)`` of any dtype.
        padding: pixels of zero padding per side (static); 0 returns the input.

    Returns:
        ``(n, H, W, C)`` with the dtype of ``images``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> random_crop(jax.random.key(0), jnp.ones((2, 32, 32, 3)), padding=4).shape
        (2, 32, 32, 3)
    """
    n, h, w, c = _check_images(images)
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offsets = jax.random.randint(key, (n, 2), 0, 2 * padding + 1)

    def crop(image: jax.Array, offset: jax.Array) -> jax.Array:
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))

    return jax.vmap(crop)(padded, offsets)


@jax.jit
def random_flip(key: jax.Array, images: jax.Array) -> jax.Array:
    """Mirror each image left-right (along W) independently with probability 1/2.

    Args:
        key: PRNG key.
        images: ``(n, H, W, C)``.

    Returns:
        ``(n, H, W, C)``, same dtype: image ``i`` is ``images[i, :, ::-1]`` or ``images[i]``.
    """
    n, _, _, _ = _check_images(images)
    flip = jax.random.bernoulli(key, 0.5, (n,))
    return jnp.where(flip[:, None, None, None], images[:, :, ::-1, :], images)


@jax.jit
def normalise(
    images: jax.Array,
    mean: jax.Array | Sequence[float],
    std: jax.Array | Sequence[float],
    pixel_max: float = 255.0,
) -> jax.Array:
    """``(images / pixel_max - mean) / std`` in float32, per channel (last axis).

    Args:
        images: ``(..., C)`` (or any shape for a single statistic), e.g. uint8 pixels.
        mean: ``(C,)`` or ``(1,)`` per-channel mean of ``x / pixel_max``, e.g. ``info.mean``.
        std: matching standard deviation, e.g. ``info.std``.
        pixel_max: stored value of full intensity (``info.pixel_max``).

    Returns:
        float32 array of the shape of ``images``.
    """
    mean = jnp.asarray(mean, jnp.float32)
    std = jnp.asarray(std, jnp.float32)
    return (images.astype(jnp.float32) / jnp.float32(pixel_max) - mean) / std


@partial(jax.jit, static_argnames=("padding", "flip"))
def augment_batch(
    key: jax.Array,
    images: jax.Array,
    mean: jax.Array | Sequence[float],
    std: jax.Array | Sequence[float],
    pixel_max: float = 255.0,
    padding: int = 4,
    flip: bool = True,
) -> jax.Array:
    """Standard training augmentation: random crop, random flip, then normalisation.

    The key is split in two (crop, flip), so the result equals
    ``normalise(random_flip(k2, random_crop(k1, images, padding)), mean, std, pixel_max)``
    with ``k1, k2 = jax.random.split(key)``.

    Args:
        key: PRNG key, e.g. :meth:`EpochBatcher.step_key`.
        images: ``(n, H, W, C)`` raw pixels (e.g. uint8); padding is with raw zeros (black).
        mean: per-channel mean, ``info.mean``.
        std: per-channel std, ``info.std``.
        pixel_max: ``info.pixel_max``.
        padding: crop padding per side (static); 0 disables the crop.
        flip: apply random horizontal flips (static).

    Returns:
        float32 ``(n, H, W, C)``.

    Example:
        >>> import jax, numpy as np
        >>> x = np.zeros((8, 32, 32, 3), np.uint8)
        >>> augment_batch(jax.random.key(0), x, (0.5,) * 3, (0.25,) * 3).dtype
        dtype('float32')
    """
    crop_key, flip_key = jax.random.split(key)
    out = random_crop(crop_key, images, padding) if padding else images
    if flip:
        out = random_flip(flip_key, out)
    return normalise(out, mean, std, pixel_max)
