"""Data sets that need no file and no network: scikit-learn digits, MNIST-1D, and a seeded
synthetic Gaussian-cluster generator."""

from __future__ import annotations

import importlib.metadata
import math
import numbers
import os
from typing import Any

import numpy as np

from ._cache import cached_dataset
from ._dataset import Dataset, make_dataset


def stratified_split(
    labels: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split of example indices.

    For each class ``c`` in increasing order, one ``numpy.random.default_rng(seed)`` stream
    permutes the indices of class ``c`` and the first ``round(test_fraction * n_c)`` go to the
    test split. Both index arrays are returned sorted (original order is kept).

    Args:
        labels: ``(n,)`` integer labels.
        test_fraction: fraction of each class for testing, in (0, 1).
        seed: seed of the permutation stream.

    Returns:
        ``(train_indices, test_indices)`` int64.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n_test = int(round(test_fraction * len(members)))
        if not 0 < n_test < len(members):
            raise ValueError(f"test_fraction {test_fraction} leaves class {c} with an empty split")
        test.append(rng.permutation(members)[:n_test])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return train_idx, test_idx


def load_digits(*, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's handwritten digits: 1,797 grayscale 8x8 images, 10 classes.

    Pixels are the original integers 0..16, stored as uint8 ``(n, 8, 8, 1)`` with
    ``info.pixel_max = 16``. The train/test split is :func:`stratified_split` with
    ``test_fraction`` and ``seed`` (defaults: 20 % of each class, seed 0, giving 1,438 / 359).

    Args:
        test_fraction: fraction of each class held out for testing.
        seed: seed of the split.

    Returns:
        :class:`Dataset` named ``"digits"``.

    Example:
        >>> ds = load_digits()
        >>> ds.info.n_train, ds.info.n_test, ds.info.input_shape
        (1438, 359, (8, 8, 1))
    """
    seed = _check_int("seed", seed, 0)
    ok = isinstance(test_fraction, numbers.Real) and not isinstance(test_fraction, bool)
    if not ok or not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}")
    from sklearn.datasets import load_digits as sklearn_digits  # slow import, only when used

    bunch = sklearn_digits()
    images = np.asarray(bunch.images)
    if images.min() < 0 or images.max() > 16 or not np.array_equal(images, np.round(images)):
        raise ValueError("scikit-learn digits are no longer integers in 0..16")
    x = images.astype(np.uint8)[..., None]
    y = np.asarray(bunch.target, np.int32)
    train, test = stratified_split(y, test_fraction, seed)
    return make_dataset(
        x[train],
        y[train],
        x[test],
        y[test],
        name="digits",
        class_names=tuple(str(d) for d in range(10)),
        pixel_max=16.0,
        source="sklearn.datasets.load_digits() (UCI optical recognition of handwritten digits)",
        split=f"stratified, {test_fraction:g} of each class to test, seed {seed}, original order",
        provenance=(f"load_digits(test_fraction={test_fraction}, seed={seed})",),
        reference="Alpaydin & Kaynak (1998), UCI Optical Recognition of Handwritten Digits",
    )


def load_mnist1d(
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    num_samples: int | None = None,
    seed: int | None = None,
    use_cache: bool = True,
) -> Dataset:
    """MNIST-1D (Greydanus, 2020): 1-D signals of length 40, 10 classes, 4,000 / 1,000.

    Built procedurally by ``mnist1d.data.make_dataset(get_dataset_args())`` (never its
    network-first ``get_dataset``), which takes a few seconds, so the result is cached. The
    global numpy random state that ``make_dataset`` reseeds is restored afterwards. Signals are
    float32 ``(n, 40)``, already standardised by the generator (``pixel_max = 1``).

    Args:
        cache_dir: cache root (default ``$SDCOMPLEX_CACHE`` or ``~/.cache/sdcomplex``).
        num_samples: total examples (default 5,000; 80 % train); ``None`` keeps the default.
        seed: generator seed (default 42); ``None`` keeps the default.
        use_cache: read and write the cache.

    Returns:
        :class:`Dataset` named ``"mnist1d"``.
    """
    import mnist1d.data

    args = mnist1d.data.get_dataset_args()
    if num_samples is not None:
        args.num_samples = _check_int("num_samples", num_samples, 1)
    if seed is not None:
        args.seed = _check_int("seed", seed, 0)
    settings = {k: v for k, v in vars(args).items() if k != "url"}
    version = importlib.metadata.version("mnist1d")

    def build() -> Dataset:
        # make_dataset reseeds numpy's legacy global generator: put the caller's state back
        state = np.random.get_state()  # noqa: NPY002
        try:
            raw = mnist1d.data.make_dataset(args)
        finally:
            np.random.set_state(state)  # noqa: NPY002
        return make_dataset(
            raw["x"],
            raw["y"],
            raw["x_test"],
            raw["y_test"],
            name="mnist1d",
            class_names=tuple(str(d) for d in range(10)),
            pixel_max=1.0,
            source=f"mnist1d {version}: mnist1d.data.make_dataset(get_dataset_args())",
            split=f"generator's split: first {args.train_split:g} train, rest test",
            provenance=(f"load_mnist1d(num_samples={args.num_samples}, seed={args.seed})",),
            reference="Greydanus (2020), Scaling down deep learning (MNIST-1D)",
        )

    key = {"settings": settings, "version": version}
    return cached_dataset("mnist1d", key, build, cache_dir=cache_dir, use_cache=use_cache)


def _check_int(label: str, value: Any, minimum: int) -> int:
    """``value`` as an int, or a ``ValueError`` naming the option (strings, floats and bools
    are refused: options come from config files and command lines)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{label} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def load_synthetic(
    *,
    n_train: int = 1000,
    n_test: int = 1000,
    dim: int = 20,
    num_classes: int = 10,
    separation: float = 3.0,
    noise: float = 1.0,
    seed: int = 0,
) -> Dataset:
    """Seeded Gaussian class clusters.

    Class means ``mu_c ~ N(0, separation^2 / dim * I_dim)`` (expected distance between two
    means ``separation * sqrt(2)``); an example of class ``c`` is ``mu_c + noise * N(0, I)``.
    Labels are balanced (``k mod num_classes``, then shuffled). Everything comes from one
    ``numpy.random.default_rng(seed)`` stream, so equal arguments give equal arrays.

    Args:
        n_train: training examples.
        n_test: test examples.
        dim: input dimension ``d``.
        num_classes: number of classes (>= 2).
        separation: scale of the class means.
        noise: standard deviation of the within-class noise.
        seed: generator seed.

    Returns:
        :class:`Dataset` named ``"synthetic"`` with float32 ``(n, d)`` inputs.

    Example:
        >>> ds = load_synthetic(n_train=30, n_test=9, dim=4, num_classes=3)
        >>> ds.x_train.shape, ds.class_counts("test").tolist()
        ((30, 4), [3, 3, 3])
    """
    for label, value, minimum in (
        ("n_train", n_train, 1),
        ("n_test", n_test, 1),
        ("dim", dim, 1),
        ("num_classes", num_classes, 2),
        ("seed", seed, 0),
    ):
        _check_int(label, value, minimum)
    for label, number, positive in (("separation", separation, False), ("noise", noise, True)):
        ok = isinstance(number, numbers.Real) and not isinstance(number, bool)
        if not ok or not math.isfinite(number) or number < 0 or (positive and number == 0):
            bound = "> 0" if positive else ">= 0"
            raise ValueError(f"{label} must be a finite number {bound}, got {number!r}")
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=separation / np.sqrt(dim), size=(num_classes, dim))

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.permutation(np.arange(n) % num_classes)
        x = means[y] + noise * rng.standard_normal((n, dim))
        return x.astype(np.float32), y.astype(np.int32)

    x_train, y_train = sample(n_train)
    x_test, y_test = sample(n_test)
    options = (
        f"n_train={n_train}, n_test={n_test}, dim={dim}, num_classes={num_classes}, "
        f"separation={separation}, noise={noise}, seed={seed}"
    )
    return make_dataset(
        x_train,
        y_train,
        x_test,
        y_test,
        name="synthetic",
        class_names=tuple(f"class_{c}" for c in range(num_classes)),
        pixel_max=1.0,
        source="sdcomplex.data.load_synthetic (Gaussian class clusters)",
        split="independent draws from the same generator stream (train first)",
        provenance=(f"load_synthetic({options})",),
    )
