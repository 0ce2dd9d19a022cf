"""JAX augmentation against numpy references, and deterministic epoch batching."""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest

from sdcomplex.data import EpochBatcher, augment_batch, normalise
from sdcomplex.data._augment import random_crop, random_flip


def _images(n: int = 64, h: int = 6, w: int = 7, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 256, size=(n, h, w, 3), dtype=np.uint8)


def _crop_offsets(x: np.ndarray, out: np.ndarray, padding: int) -> list[tuple[int, int]]:
    """Numpy reference: the offset of the padded image each output is a window of."""
    n, h, w, _ = x.shape
    padded = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    offsets = []
    for i in range(n):
        matches = [
            (dy, dx)
            for dy, dx in itertools.product(range(2 * padding + 1), repeat=2)
            if np.array_equal(out[i], padded[i, dy : dy + h, dx : dx + w])
        ]
        assert len(matches) == 1, f"image {i} is not a unique shift of its padded copy"
        offsets.append(matches[0])
    return offsets


def test_random_crop_is_a_shift_of_the_zero_padded_image() -> None:
    x = _images()
    out = np.asarray(random_crop(jax.random.key(0), x, padding=2))
    assert out.shape == x.shape and out.dtype == np.uint8
    offsets = _crop_offsets(x, out, 2)
    assert len(set(offsets)) > 10  # offsets really vary over the 25 possibilities
    assert {dy for dy, _ in offsets} == set(range(5)) == {dx for _, dx in offsets}


def test_random_crop_is_deterministic_in_the_key() -> None:
    x = _images()
    a = random_crop(jax.random.key(1), x, padding=2)
    np.testing.assert_array_equal(a, random_crop(jax.random.key(1), x, padding=2))
    assert not np.array_equal(a, random_crop(jax.random.key(2), x, padding=2))
    np.testing.assert_array_equal(random_crop(jax.random.key(1), x, padding=0), x)
    with pytest.raises(ValueError, match=r"\(n, H, W, C\) batch"):
        random_crop(jax.random.key(0), x[0])


def test_random_flip_is_a_mirror_or_identity() -> None:
    x = _images()
    out = np.asarray(random_flip(jax.random.key(3), x))
    flipped = [bool(np.array_equal(o, xi[:, ::-1])) for o, xi in zip(out, x, strict=True)]
    same = [bool(np.array_equal(o, xi)) for o, xi in zip(out, x, strict=True)]
    assert all(f != s for f, s in zip(flipped, same, strict=True))  # exactly one of the two
    assert 10 < sum(flipped) < 54  # about half of 64
    np.testing.assert_array_equal(out, random_flip(jax.random.key(3), x))


def test_normalise_matches_numpy() -> None:
    x = _images()
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    out = np.asarray(normalise(x, mean, std))
    ref = (x.astype(np.float64) / 255.0 - np.array(mean)) / np.array(std)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    digits = np.asarray(normalise(np.full((2, 8, 8, 1), 16, np.uint8), (0.5,), (0.25,), 16.0))
    np.testing.assert_allclose(digits, 2.0)


def test_augment_batch_composes_crop_flip_normalise() -> None:
    x = _images()
    key = jax.random.key(7)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    out = augment_batch(key, x, mean, std, padding=2)
    k1, k2 = jax.random.split(key)
    ref = normalise(random_flip(k2, random_crop(k1, x, 2)), mean, std)
    # same pixels; XLA may fuse the division differently (1 ulp)
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
    assert out.shape == x.shape and out.dtype == np.float32
    plain = augment_batch(key, x, mean, std, padding=0, flip=False)
    np.testing.assert_allclose(plain, normalise(x, mean, std), rtol=1e-6, atol=1e-6)


def test_epoch_batcher_covers_each_epoch_and_is_reproducible() -> None:
    batcher = EpochBatcher(num_examples=103, batch_size=10, seed=4, drop_last=False)
    assert batcher.batches_per_epoch == 11
    batches = list(batcher.batch_indices(epoch=2))
    assert [len(b) for b in batches] == [10] * 10 + [3]
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(103))
    np.testing.assert_array_equal(
        np.concatenate(batches), np.random.default_rng([4, 2]).permutation(103)
    )
    fresh = EpochBatcher(num_examples=103, batch_size=10, seed=4, drop_last=False)
    for a, b in zip(batches, fresh.batch_indices(2), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(batcher.permutation(2), batcher.permutation(3))
    assert not np.array_equal(batcher.permutation(2), EpochBatcher(103, 10, seed=5).permutation(2))


def test_epoch_batcher_drop_last_and_resume() -> None:
    x, y = np.arange(50) * 2, np.arange(50)
    batcher = EpochBatcher(num_examples=50, batch_size=8)
    full = list(batcher.batches(1, x, y))
    assert len(full) == 6 == batcher.batches_per_epoch
    assert all(xb.shape == (8,) for xb, _ in full)
    for xb, yb in full:
        np.testing.assert_array_equal(xb, 2 * yb)
    resumed = list(batcher.batches(1, x, y, start=4))
    assert len(resumed) == 2
    for (xa, _), (xb, _) in zip(full[4:], resumed, strict=True):
        np.testing.assert_array_equal(xa, xb)
    with pytest.raises(ValueError, match="rows"):
        next(batcher.batches(0, x[:-1]))


def test_epoch_batcher_keys_and_validation() -> None:
    batcher = EpochBatcher(num_examples=10, batch_size=5, seed=1)
    data = jax.random.key_data
    k = batcher.step_key(3, 1)
    np.testing.assert_array_equal(data(k), data(batcher.step_key(3, 1)))
    others = [batcher.step_key(3, 0), batcher.step_key(2, 1), EpochBatcher(10, 5, 2).step_key(3, 1)]
    for other in others:
        assert not np.array_equal(data(k), data(other))
    with pytest.raises(ValueError, match="leaves no batch"):
        EpochBatcher(num_examples=3, batch_size=4)
    with pytest.raises(TypeError, match="batch_size must be an integer"):
        EpochBatcher(num_examples=3, batch_size=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        batcher.permutation(-1)
    with pytest.raises(ValueError, match="start must be in"):
        next(batcher.batch_indices(0, start=3))
