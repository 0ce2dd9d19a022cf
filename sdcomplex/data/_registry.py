"""Registry of named data sets and the :func:`load_dataset` entry point."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._cifar import load_cifar10, load_cifar100
from ._dataset import Dataset
from ._embedded import load_digits, load_mnist1d, load_synthetic
from ._image_folder import load_cifar10_jpeg, load_image_folder
from ._tiny_imagenet import load_tiny_imagenet
from ._variants import balanced_subset, binary_variant

_COMMON = ("data_dir", "cache_dir", "download")


CROP_FRACTION = 8
"""Crop padding per side is ``image_size / CROP_FRACTION`` (rounded, at least 1): the CIFAR
recipe's 4 pixels for 32-pixel images, 8 for Tiny ImageNet's 64, 1 for the 8-pixel digits."""


@dataclass(frozen=True)
class AugmentationDefaults:
    """The training augmentation a data set gets by default (the CIFAR recipe, scaled).

    Attributes:
        image_size: height (= width) of the images; ``None`` for data that are not images or
            whose size is only known when loaded (no augmentation by default).
        mirror_invariant: whether a left-right mirrored example keeps its class (natural
            images: yes; digits and characters: no), so random flips are a sound default.
    """

    image_size: int | None
    mirror_invariant: bool

    @property
    def augment(self) -> bool:
        """Augment by default: only images of a known size."""
        return self.image_size is not None

    @property
    def crop_padding(self) -> int:
        """Random-crop padding per side, ``round(image_size / 8)`` (at least 1; 0 without
        images)."""
        if self.image_size is None:
            return 0
        return max(1, round(self.image_size / CROP_FRACTION))

    @property
    def flip(self) -> bool:
        """Random horizontal flips by default: only for mirror-invariant classes."""
        return self.mirror_invariant


@dataclass(frozen=True)
class _Entry:
    loader: Callable[..., Dataset]
    description: str
    augmentation: AugmentationDefaults


_REGISTRY: dict[str, _Entry] = {}


def register_dataset(
    name: str,
    loader: Callable[..., Dataset],
    description: str,
    *,
    image_size: int | None = None,
    mirror_invariant: bool = False,
) -> None:
    """Add a named data set to the registry used by :func:`load_dataset`.

    Args:
        name: registry name (lower case, no spaces).
        loader: callable with keyword-only options returning a :class:`Dataset`. It receives
            ``data_dir``, ``cache_dir`` and ``download`` only if its signature names them.
        description: one line shown by :func:`available_datasets`.
        image_size: height (= width) of its images, ``None`` if not images or not known
            before loading; sets the default crop padding (see :class:`AugmentationDefaults`).
        mirror_invariant: whether its classes survive a left-right mirror (default flips).

    Raises:
        ValueError: the name is taken or malformed, or a non-positive image size.
    """
    if not name or name != name.strip().lower() or " " in name:
        raise ValueError(f"dataset names are lower case without spaces, got {name!r}")
    if name in _REGISTRY:
        raise ValueError(f"dataset {name!r} is already registered")
    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1
    ):
        raise ValueError(f"image_size must be a positive integer or None, got {image_size!r}")
    augmentation = AugmentationDefaults(image_size, bool(mirror_invariant))
    _REGISTRY[name] = _Entry(loader, description, augmentation)


def augmentation_defaults(name: str) -> AugmentationDefaults:
    """The default training augmentation of a registered data set.

    Raises:
        ValueError: unknown name (the message lists the known ones).

    Example:
        >>> d = augmentation_defaults("digits")
        >>> d.augment, d.crop_padding, d.flip
        (True, 1, False)
        >>> d = augmentation_defaults("cifar10")
        >>> d.augment, d.crop_padding, d.flip
        (True, 4, True)
    """
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"unknown dataset {name!r}; available: {known}")
    return _REGISTRY[name].augmentation


def available_datasets() -> dict[str, str]:
    """Registered data set names (sorted) with a one-line description each."""
    return {name: _REGISTRY[name].description for name in sorted(_REGISTRY)}


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    binary: bool | tuple[Sequence[int], Sequence[int]] = False,
    n_per_class: int | None = None,
    subset_seed: int = 0,
    **options: Any,
) -> Dataset:
    """Load a registered data set by name.

    Args:
        name: one of :func:`available_datasets`.
        data_dir: where the loader finds its files (default per data set, see its loader).
        cache_dir: root of the decoded-array cache (default ``$SDCOMPLEX_CACHE`` or
            ``~/.cache/sdcomplex``).
        download: allow fetching a missing official archive from its official URL.
        binary: ``True`` applies :func:`binary_variant` (first half of the classes vs the
            rest); a pair ``(negative_classes, positive_classes)`` chooses the groups.
        n_per_class: if given, keep a :func:`balanced_subset` of this many training examples
            per class (after ``binary``).
        subset_seed: seed of that subset.
        **options: loader-specific options (e.g. ``label_mode="coarse"`` for CIFAR-100).

    Returns:
        The :class:`Dataset`.

    Raises:
        ValueError: unknown name (the message lists the known ones), an option the loader does
            not take, a ``binary`` that is neither a bool nor a pair, or any loader error
            (missing file, bad checksum, corrupt archive...).

    Example:
        >>> ds = load_dataset("digits", binary=True, n_per_class=50)
        >>> ds.info.num_classes, ds.info.n_train
        (2, 100)
    """
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"unknown dataset {name!r}; available: {known}")
    loader = _REGISTRY[name].loader
    params = inspect.signature(loader).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs: dict[str, Any] = {}
    for key, value, default in (
        ("data_dir", data_dir, None),
        ("cache_dir", cache_dir, None),
        ("download", download, False),
    ):
        if key in params or accepts_any:
            kwargs[key] = value
        elif value != default:
            raise ValueError(f"dataset {name!r} does not take {key}")
    valid = sorted(k for k in params if k not in _COMMON)
    unknown = sorted(set(options) - set(valid)) if not accepts_any else []
    if unknown:
        raise ValueError(f"dataset {name!r} has no option(s) {unknown}; valid options: {valid}")
    dataset = loader(**kwargs, **options)
    groups: tuple[Sequence[int] | None, Sequence[int] | None] | None
    if isinstance(binary, bool | np.bool_):
        groups = (None, None) if binary else None
    elif isinstance(binary, tuple | list) and len(binary) == 2:
        groups = binary
    else:  # 0, 1 or None are not taken for a bool: only True, False or the pair
        raise ValueError(
            f"binary must be True, False or a pair (negative_classes, positive_classes), "
            f"got {binary!r}"
        )
    if groups is not None:
        dataset = binary_variant(dataset, groups[0], groups[1])
    if n_per_class is not None:
        dataset = balanced_subset(dataset, n_per_class, seed=subset_seed)
    return dataset


for _name, _loader, _description, _size, _mirror in (
    (
        "cifar10",
        load_cifar10,
        "CIFAR-10 from cifar-10-python.tar.gz (official, md5-checked)",
        32,
        True,
    ),
    (
        "cifar100",
        load_cifar100,
        "CIFAR-100 from cifar-100-python.tar.gz; label_mode fine/coarse",
        32,
        True,
    ),
    (
        "cifar10_jpeg",
        load_cifar10_jpeg,
        "CIFAR-10 as JPEGs, ../shared/data/cifar10-jpeg.tar.gz",
        32,
        True,
    ),
    (
        "tiny_imagenet",
        load_tiny_imagenet,
        "Tiny ImageNet 200 (dir or zip); val is the test split",
        64,
        True,
    ),
    (
        "image_folder",
        load_image_folder,
        "train/<class>/, test/<class>/ images (dir, zip, tar)",
        None,
        False,
    ),
    (
        "digits",
        load_digits,
        "scikit-learn digits, 8x8x1, stratified 80/20 split (embedded)",
        8,
        False,
    ),
    (
        "mnist1d",
        load_mnist1d,
        "MNIST-1D, 40-dim signals, 4000/1000 (generated, cached)",
        None,
        False,
    ),
    (
        "synthetic",
        load_synthetic,
        "seeded Gaussian class clusters (n, dim, classes options)",
        None,
        False,
    ),
):
    register_dataset(_name, _loader, _description, image_size=_size, mirror_invariant=_mirror)
