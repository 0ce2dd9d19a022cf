"""The in-memory data set: arrays plus the metadata a researcher needs to record.

A :class:`Dataset` holds the four split arrays as numpy arrays in their storage dtype (8-bit
images stay ``uint8``), and a :class:`DatasetInfo` that says what they are: class names, input
shape, split sizes, per-channel normalisation statistics, where the data came from and every step
that produced it. :func:`normalised_arrays` turns a data set into the float32 arrays a model eats.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

_STATS_CHUNK = 4096  # examples per chunk when computing statistics (bounded memory)


@dataclass(frozen=True)
class DatasetInfo:
    """Metadata of a data set, stored next to results so a run can be reproduced.

    Attributes:
        name: registry name of the data set, e.g. ``"cifar10"``.
        class_names: one name per label, in label order (label ``k`` is ``class_names[k]``).
        input_shape: shape of one example without the batch axis: ``(H, W, C)`` for images
            (NHWC), ``(d,)`` for 1-D / tabular data.
        n_train: number of training examples.
        n_test: number of test examples.
        mean: normalisation mean per channel of ``x / pixel_max`` over the training split: one
            value per channel (last axis) for images, a single value over all features for 1-D
            data.
        std: matching population standard deviation (ddof = 0), same layout as ``mean``.
        pixel_max: the stored value that maps to 1.0 before normalisation: 255 for 8-bit
            images, 16 for scikit-learn digits, 1 for float data.
        source: where the data came from (file path and official URL, or package function).
        checksum: ``"<algorithm>:<hex digest>"`` of the verified source file, ``None`` when
            there is no single file or it was not verified.
        split: how the train and test splits were formed.
        provenance: every step that produced the arrays, in order (loader and options,
            then derived variants such as binary relabelling or class-balanced subsets).
        reference: citation for the data set.
    """

    name: str
    class_names: tuple[str, ...]
    input_shape: tuple[int, ...]
    n_train: int
    n_test: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pixel_max: float
    source: str
    checksum: str | None = None
    split: str = ""
    provenance: tuple[str, ...] = ()
    reference: str = ""

    def __post_init__(self) -> None:
        if len(self.class_names) < 2:
            raise ValueError(f"a data set needs at least 2 classes, got {self.class_names!r}")
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"class names must be unique, got {self.class_names!r}")
        if len(self.mean) != len(self.std) or len(self.mean) != self.num_channels:
            raise ValueError(
                f"mean {self.mean} and std {self.std} need one value per channel "
                f"({self.num_channels} for input shape {self.input_shape})"
            )
        if not all(math.isfinite(v) for v in (*self.mean, *self.std, self.pixel_max)):
            raise ValueError(
                f"mean {self.mean}, std {self.std} and pixel_max {self.pixel_max} must be finite"
            )
        if any(s <= 0 for s in self.std) or self.pixel_max <= 0:
            raise ValueError(f"std {self.std} and pixel_max {self.pixel_max} must be positive")

    @property
    def num_classes(self) -> int:
        """Number of classes, ``len(class_names)``."""
        return len(self.class_names)

    @property
    def is_image(self) -> bool:
        """Whether examples are ``(H, W, C)`` images (otherwise 1-D vectors)."""
        return len(self.input_shape) == 3

    @property
    def num_channels(self) -> int:
        """Channels with their own normalisation statistics: ``C`` for images, else 1."""
        return self.input_shape[-1] if self.is_image else 1

    def replace(self, **changes: Any) -> DatasetInfo:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (tuples become lists); inverse of :meth:`from_dict`."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetInfo:
        """Rebuild from :meth:`to_dict` output, e.g. after a JSON round trip."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"unknown DatasetInfo fields {sorted(unknown)}")
        values: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items()
        }
        return cls(**values)

    def to_json(self) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DatasetInfo:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled train/test data set held in memory as numpy arrays.

    Attributes:
        x_train: ``(n_train, *input_shape)``; ``uint8`` for images (NHWC), ``float32`` for 1-D
            or tabular data.
        y_train: ``(n_train,)`` int32 labels in ``[0, num_classes)``.
        x_test: ``(n_test, *input_shape)``, same dtype as ``x_train``.
        y_test: ``(n_test,)`` int32 labels.
        info: the :class:`DatasetInfo`; its sizes and shapes are checked against the arrays.

    Example:
        >>> from sdcomplex.data import load_dataset
        >>> ds = load_dataset("synthetic", n_train=100, n_test=50, dim=5, num_classes=3)
        >>> ds.x_train.shape, ds.y_train.dtype.name, ds.info.num_classes
        ((100, 5), 'int32', 3)
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    info: DatasetInfo

    def __post_init__(self) -> None:
        info = self.info
        for split, x, y, n in (
            ("train", self.x_train, self.y_train, info.n_train),
            ("test", self.x_test, self.y_test, info.n_test),
        ):
            if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
                raise TypeError(f"x_{split} and y_{split} must be numpy arrays")
            if x.shape != (n, *info.input_shape):
                raise ValueError(
                    f"x_{split} has shape {x.shape}, info says {(n, *info.input_shape)}"
                )
            expected = np.uint8 if info.is_image else np.float32
            if x.dtype != expected:
                raise ValueError(f"x_{split} has dtype {x.dtype}, expected {np.dtype(expected)}")
            if y.shape != (n,) or y.dtype != np.int32:
                raise ValueError(
                    f"y_{split} must be int32 of shape ({n},), got {y.dtype} {y.shape}"
                )
            if n and (y.min() < 0 or y.max() >= info.num_classes):
                raise ValueError(f"y_{split} has labels outside [0, {info.num_classes})")

    def class_counts(self, split: str = "train") -> np.ndarray:
        """Examples per class, ``(num_classes,)`` int64, for ``split`` in {"train", "test"}."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        y = self.y_train if split == "train" else self.y_test
        return np.bincount(y, minlength=self.info.num_classes)


def channel_stats(x: np.ndarray, pixel_max: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population std of ``x / pixel_max``.

    Integer data is summed exactly in int64; float data in float64; both in chunks, so memory
    stays bounded for large image sets.

    Args:
        x: ``(n, H, W, C)`` images (statistics per channel ``C``) or ``(n, d)`` vectors (one
            statistic over all features).
        pixel_max: divisor applied before the statistics.

    Returns:
        ``(mean, std)`` tuples of floats, one entry per channel.

    Raises:
        ValueError: no examples, or NaN or infinite values.
    """
    if x.shape[0] == 0:
        raise ValueError("cannot compute statistics of an empty array")
    channels = x.shape[-1] if x.ndim == 4 else 1
    acc = np.int64 if np.issubdtype(x.dtype, np.integer) else np.float64
    total = np.zeros(channels, acc)
    total_sq = np.zeros(channels, acc)
    for start in range(0, x.shape[0], _STATS_CHUNK):
        chunk = x[start : start + _STATS_CHUNK].astype(acc).reshape(-1, channels)
        total += chunk.sum(axis=0)
        total_sq += np.einsum("ij,ij->j", chunk, chunk)
    if not np.isfinite(total_sq).all():
        raise ValueError("statistics must be finite: the data hold NaN or infinite values")
    count = x.size // channels
    mean = total / count
    var = np.maximum(total_sq / count - mean**2, 0.0)
    std = np.sqrt(var) / pixel_max
    std = np.where(std > 0, std, 1.0)  # constant channels: leave them unscaled
    return tuple(float(m) for m in mean / pixel_max), tuple(float(s) for s in std)


class ModelArrays(NamedTuple):
    """Normalised float32 arrays ready for a model (see :func:`normalised_arrays`)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def input_statistics(
    info: DatasetInfo, *, normalise: bool = True
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The per-channel ``(mean, std)`` a model's inputs are normalised with.

    ``(info.mean, info.std)``, the training statistics of ``x / pixel_max``, or with
    ``normalise=False`` zeros and ones (inputs only rescaled to ``x / pixel_max``): the one
    rule of a run's ``normalise`` setting, shared by training, evaluation, a teacher and the
    kernels of a run.

    Example:
        >>> info = DatasetInfo("d", ("a", "b"), (4, 4, 3), 2, 2, (0.5,) * 3, (0.25,) * 3, 255, "")
        >>> input_statistics(info)[0], input_statistics(info, normalise=False)
        ((0.5, 0.5, 0.5), ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)))
    """
    if normalise:
        return tuple(info.mean), tuple(info.std)
    return (0.0,) * info.num_channels, (1.0,) * info.num_channels


def normalise_array(x: np.ndarray, info: DatasetInfo) -> np.ndarray:
    """``(x / pixel_max - mean) / std`` per channel, as float32 (numpy, any leading shape)."""
    mean = np.asarray(info.mean, np.float32)
    std = np.asarray(info.std, np.float32)
    out = np.empty(x.shape, np.float32)
    for start in range(0, x.shape[0], _STATS_CHUNK):
        chunk = x[start : start + _STATS_CHUNK].astype(np.float32) / np.float32(info.pixel_max)
        out[start : start + _STATS_CHUNK] = (chunk - mean) / std
    return out


def normalised_arrays(dataset: Dataset, *, normalise: bool = True) -> ModelArrays:
    """Float32 model inputs of a data set.

    Each input becomes ``(x / pixel_max - mean) / std`` with the data set's per-channel training
    statistics (``info.mean``, ``info.std``), so the training split has mean 0 and std 1 per
    channel. With ``normalise=False`` inputs are only scaled to ``x / pixel_max``.

    Args:
        dataset: the data set.
        normalise: subtract the mean and divide by the std (default) or only rescale.

    Returns:
        :class:`ModelArrays` ``(x_train, y_train, x_test, y_test)``: inputs float32 with the
        same shapes as in the data set, labels the int32 arrays of the data set.

    Example:
        >>> from sdcomplex.data import load_dataset, normalised_arrays
        >>> arrays = normalised_arrays(load_dataset("digits"))
        >>> arrays.x_train.dtype.name, abs(float(arrays.x_train.mean())) < 1e-5
        ('float32', True)
    """
    mean, std = input_statistics(dataset.info, normalise=normalise)
    info = dataset.info.replace(mean=mean, std=std)
    return ModelArrays(
        normalise_array(dataset.x_train, info),
        dataset.y_train,
        normalise_array(dataset.x_test, info),
        dataset.y_test,
    )


def make_dataset(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    name: str,
    class_names: tuple[str, ...],
    pixel_max: float,
    source: str,
    **info_fields: Any,
) -> Dataset:
    """Build a :class:`Dataset`, deriving sizes, shape and normalisation from the arrays.

    Labels are cast to int32 and 1-D / tabular inputs to float32; ``mean`` and ``std`` are the
    per-channel statistics of ``x_train / pixel_max`` (:func:`channel_stats`).
    """
    is_image = x_train.ndim == 4
    if not is_image:
        x_train = np.asarray(x_train, np.float32)
        x_test = np.asarray(x_test, np.float32)
    mean, std = channel_stats(x_train, pixel_max)
    info = DatasetInfo(
        name=name,
        class_names=tuple(class_names),
        input_shape=tuple(int(d) for d in x_train.shape[1:]),
        n_train=int(x_train.shape[0]),
        n_test=int(x_test.shape[0]),
        mean=mean,
        std=std,
        pixel_max=float(pixel_max),
        source=source,
        **info_fields,
    )
    return Dataset(
        x_train, np.asarray(y_train, np.int32), x_test, np.asarray(y_test, np.int32), info
    )
