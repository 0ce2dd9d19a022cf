"""Derived data sets: binary relabellings and deterministic class-balanced subsets.

Both keep the metadata consistent (sizes, class names, provenance) and keep the parent's
normalisation statistics, so a model sees inputs scaled exactly as on the full data set (the
paper computes complexities of binary CIFAR-100 variants with CIFAR-100 preprocessing).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from sdcomplex._checks import as_int

from ._dataset import Dataset


def _ranges(classes: Sequence[int]) -> str:
    """Compact description of sorted class indices, e.g. ``"0-4,7"``."""
    out, start, prev = [], classes[0], classes[0]
    for c in [*classes[1:], None]:
        if c is not None and c == prev + 1:
            prev = c
            continue
        out.append(f"{start}-{prev}" if prev > start else f"{start}")
        if c is not None:
            start = prev = c
    return ",".join(out)


def _group_name(classes: Sequence[int], names: Sequence[str]) -> str:
    if len(classes) <= 3:
        return "+".join(names[c] for c in classes)
    return f"classes {_ranges(classes)}"


def _check_classes(classes: Sequence[int], num_classes: int, what: str) -> list[int]:
    if isinstance(classes, str | bytes) or not isinstance(classes, Iterable):
        raise TypeError(f"{what} must be a sequence of class indices, got {classes!r}")
    listed = [as_int(f"{what}[{i}]", c) for i, c in enumerate(classes)]  # 0.7 is no class
    out = sorted(set(listed))
    if len(out) != len(listed):
        raise ValueError(f"{what} lists a class twice: {listed}")
    if not out or out[0] < 0 or out[-1] >= num_classes:
        raise ValueError(f"{what} must be non-empty class indices in [0, {num_classes})")
    return out


def binary_variant(
    dataset: Dataset,
    negative_classes: Sequence[int] | None = None,
    positive_classes: Sequence[int] | None = None,
) -> Dataset:
    """Relabel a data set into two classes: label 0 for ``negative_classes``, 1 for the others.

    By default the first half of the classes (``0 .. C//2 - 1``) is class 0 and the rest class 1,
    e.g. CIFAR-100 classes 0-49 vs 50-99. With ``positive_classes`` too, examples of classes in
    neither group are dropped (e.g. cat vs dog). Example order is kept.

    Args:
        dataset: any data set with at least 2 classes.
        negative_classes: original classes mapped to label 0.
        positive_classes: original classes mapped to label 1 (default: all others).

    Returns:
        :class:`Dataset` with int32 labels in {0, 1}, ``class_names`` describing each group,
        updated sizes and a provenance entry.

    Raises:
        TypeError: a group that is not a sequence of integers (``0.7`` is no class index).
        ValueError: a class out of range or listed twice, or groups that overlap or are empty.

    Example:
        >>> from sdcomplex.data import load_dataset
        >>> ds = binary_variant(load_dataset("digits"))
        >>> ds.info.class_names
        ('classes 0-4', 'classes 5-9')
    """
    info = dataset.info
    num = info.num_classes
    neg = _check_classes(
        range(num // 2) if negative_classes is None else negative_classes, num, "negative_classes"
    )
    if positive_classes is None:
        pos = [c for c in range(num) if c not in neg]
    else:
        pos = _check_classes(positive_classes, num, "positive_classes")
    if not pos or set(neg) & set(pos):
        raise ValueError(f"class groups must be disjoint and non-empty: {neg} vs {pos}")
    mapping = np.full(num, -1, np.int32)
    mapping[neg], mapping[pos] = 0, 1
    arrays = []
    for x, y in ((dataset.x_train, dataset.y_train), (dataset.x_test, dataset.y_test)):
        keep = mapping[y] >= 0
        arrays += [x if keep.all() else x[keep], mapping[y][keep]]
    names = (_group_name(neg, info.class_names), _group_name(pos, info.class_names))
    new_info = info.replace(
        class_names=names,
        n_train=len(arrays[1]),
        n_test=len(arrays[3]),
        provenance=(
            *info.provenance,
            f"binary_variant(negative={_ranges(neg)} -> 0, positive={_ranges(pos)} -> 1)",
        ),
    )
    x_train, y_train, x_test, y_test = arrays
    return Dataset(x_train, y_train, x_test, y_test, new_info)


def balanced_indices(
    labels: Any,
    n_per_class: int,
    *,
    seed: int | Sequence[int] = 0,
    num_classes: int | None = None,
) -> np.ndarray:
    """Sorted indices of ``n_per_class`` examples of every class, chosen at random.

    For each class ``c`` in label order one ``numpy.random.default_rng(seed)`` stream permutes
    that class's indices and the first ``n_per_class`` are kept; the chosen indices are sorted,
    so subsets with the same seed are nested (the one of size ``m < n`` lies in the one of size
    ``n``). The selection of :func:`balanced_subset` and of the kernels of a run.

    Args:
        labels: (n,) integer labels.
        n_per_class: examples per class, ``>= 1``.
        seed: numpy seed of the selection (an int or a sequence of ints).
        num_classes: C (default ``max(labels) + 1``); every class needs ``n_per_class``.

    Returns:
        (C * n_per_class,) int64 indices, increasing.

    Raises:
        ValueError: labels not a 1-D integer array or outside [0, C), ``n_per_class`` or
            ``num_classes`` < 1, or a class with fewer examples.

    Example:
        >>> balanced_indices(np.array([0, 1, 0, 1, 1, 0]), 2, seed=0).tolist()
        [0, 3, 4, 5]
    """
    y = np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or y.size == 0:
        raise ValueError(f"labels must be a 1-D integer array, got shape {y.shape} {y.dtype}")
    if (
        isinstance(n_per_class, bool)
        or not isinstance(n_per_class, int | np.integer)
        or n_per_class < 1
    ):
        raise ValueError(f"n_per_class must be a positive integer, got {n_per_class!r}")
    if num_classes is not None and (
        isinstance(num_classes, bool)
        or not isinstance(num_classes, int | np.integer)
        or num_classes < 1
    ):
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    top = int(y.max()) + 1 if num_classes is None else num_classes
    if y.min() < 0 or y.max() >= top:
        bad = int(y.min()) if y.min() < 0 else int(y.max())
        raise ValueError(f"labels must lie in [0, {top}), found {bad}")
    counts = np.bincount(y, minlength=top)
    if counts.min() < n_per_class:
        c = int(counts.argmin())
        raise ValueError(f"class {c} has only {counts[c]} examples, asked for {n_per_class}")
    rng = np.random.default_rng(seed)
    picks = [rng.permutation(np.flatnonzero(y == c))[:n_per_class] for c in range(len(counts))]
    return np.sort(np.concatenate(picks)).astype(np.int64)


def balanced_subset(
    dataset: Dataset,
    n_per_class: int,
    *,
    seed: int = 0,
    n_test_per_class: int | None = None,
) -> Dataset:
    """Deterministic class-balanced subset: ``n_per_class`` training examples of every class.

    For each class ``c`` (in label order) one ``numpy.random.default_rng(seed)`` stream permutes
    that class's indices and the first ``n_per_class`` are kept; the chosen indices are then
    sorted, so the subset keeps the original order. Subsets are nested: with the same seed the
    subset of size ``m < n`` is contained in the one of size ``n``. The test split is kept
    whole unless ``n_test_per_class`` is given (then chosen the same way, from a stream seeded
    with ``(seed, 1)``).

    Args:
        dataset: the data set.
        n_per_class: training examples kept per class (every class needs at least this many).
        seed: seed of the selection.
        n_test_per_class: test examples kept per class, or ``None`` for the whole test split.

    Returns:
        :class:`Dataset` with ``n_train = n_per_class * num_classes``.

    Example:
        >>> from sdcomplex.data import load_dataset
        >>> ds = balanced_subset(load_dataset("digits"), 20, seed=1)
        >>> ds.class_counts("train").tolist() == [20] * 10
        True
    """

    def select(y: np.ndarray, n: int, seed: int | Sequence[int], split: str) -> np.ndarray:
        try:
            return balanced_indices(y, n, seed=seed, num_classes=dataset.info.num_classes)
        except ValueError as err:
            raise ValueError(f"{split} split: {err}") from None

    train = select(dataset.y_train, n_per_class, seed, "train")
    x_test, y_test = dataset.x_test, dataset.y_test
    step = f"balanced_subset(n_per_class={n_per_class}, seed={seed}"
    if n_test_per_class is not None:
        test = select(y_test, n_test_per_class, [seed, 1], "test")
        x_test, y_test = x_test[test], y_test[test]
        step += f", n_test_per_class={n_test_per_class}"
    info = dataset.info.replace(
        n_train=len(train), n_test=len(y_test), provenance=(*dataset.info.provenance, step + ")")
    )
    return Dataset(dataset.x_train[train], dataset.y_train[train], x_test, y_test, info)
