"""CIFAR-10 and CIFAR-100 from the official python archives (Krizhevsky, 2009).

The archives ``cifar-10-python.tar.gz`` and ``cifar-100-python.tar.gz`` hold pickled dicts of
numpy arrays, lists and byte strings. They are read in memory after the published md5 checksum
has been verified, and unpickled with :class:`RestrictedUnpickler` (see :mod:`._unpickle`),
which runs no code and allocates nothing a pickle only declares. Every malformed member is one
``ValueError`` naming the archive and the member.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ._archives import ensure_file, read_members, resolve_data_dir, verify_checksum
from ._cache import cached_dataset, source_identity
from ._dataset import Dataset, make_dataset
from ._unpickle import PICKLE_ERRORS, restricted_loads
from ._unpickle import RestrictedUnpickler as RestrictedUnpickler  # re-exported

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "md5:c58f30108f718f92721af3b95e74349a"
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR100_MD5 = "md5:eb9058c3a382ffc7106e4002c42a8d85"
_REFERENCE = "Krizhevsky (2009), Learning Multiple Layers of Features from Tiny Images"


def _load_batch(members: dict[str, bytes], name: str, archive: Path) -> dict:
    if name not in members:
        raise ValueError(f"{archive} has no member {name!r}: not an official CIFAR archive")
    try:
        obj = restricted_loads(members[name])
    except PICKLE_ERRORS as err:
        text = str(err).strip().splitlines()
        detail = type(err).__name__ + (f": {text[0]}" if text else "")
        raise ValueError(f"{archive}: member {name!r} is not a valid pickle ({detail})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{archive}: member {name!r} is a {type(obj).__name__}, expected a dict")
    out: dict[str, Any] = {}
    for k, v in obj.items():
        key = k.decode("latin-1") if isinstance(k, bytes) else k
        if not isinstance(key, str) or key in out:
            raise ValueError(f"{archive}: member {name!r} has a duplicate or non-text key {k!r}")
        out[key] = v
    return out


def _images(batch: dict) -> np.ndarray:
    data = batch.get("data")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise ValueError(f"'data' must be a uint8 (n, 3072) array, got {got}")
    if data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"'data' rows have {data.shape[1]} values, expected 3072")
    # rows are channel-major (1024 red, 1024 green, 1024 blue values, each row-major)
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()


def _labels(batch: dict, key: str, n: int, num_classes: int) -> np.ndarray:
    if key not in batch:
        raise ValueError(f"no {key!r} entry")
    values = batch[key]
    if not isinstance(values, list | tuple | np.ndarray):
        raise ValueError(f"{key!r} must be a list of {n} integers, got {type(values).__name__}")
    if not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in values):
        raise ValueError(f"{key!r} must be a list of {n} integers")
    labels = np.asarray(values, dtype=np.int64)
    if labels.shape != (n,):
        raise ValueError(f"{key!r} must be {n} integers, got shape {labels.shape}")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{key!r} outside [0, {num_classes})")
    return labels.astype(np.int32)


def _names(meta: dict, key: str, count: int) -> tuple[str, ...]:
    values = meta.get(key)
    if not isinstance(values, list | tuple) or not all(isinstance(v, bytes | str) for v in values):
        raise ValueError(f"{key!r} must be a list of {count} names")
    names = tuple(v.decode("utf-8") if isinstance(v, bytes) else v for v in values)
    if len(names) != count:
        raise ValueError(f"{key!r} has {len(names)} names, expected {count}")
    return names


@contextlib.contextmanager
def _member(archive: Path, name: str) -> Iterator[None]:
    """Any error in checking member ``name`` becomes one ``ValueError`` naming the archive."""
    try:
        yield
    except Exception as err:  # malformed contents of a data file: every error is an input error
        text = str(err).strip().splitlines()
        detail = text[0] if text else type(err).__name__
        if not isinstance(err, ValueError):
            detail = f"{type(err).__name__}: {detail}"
        if str(archive) in detail:
            raise ValueError(detail) from None
        raise ValueError(f"{archive}: member {name!r}: {detail}") from None


def _build(kind: str, path: Path, checksum: str | None, label_mode: str, url: str) -> Dataset:
    verified = verify_checksum(path, checksum)  # before anything is parsed
    if kind == "cifar10":
        prefix = "cifar-10-batches-py/"
        train_names = [f"{prefix}data_batch_{i}" for i in range(1, 6)]
        test_names = [f"{prefix}test_batch"]
        meta_name, label_key, names_key = f"{prefix}batches.meta", "labels", "label_names"
        count = 10
    else:
        prefix = "cifar-100-python/"
        train_names, test_names = [f"{prefix}train"], [f"{prefix}test"]
        count = 100 if label_mode == "fine" else 20
        meta_name, label_key = f"{prefix}meta", f"{label_mode}_labels"
        names_key = f"{label_mode}_label_names"
    wanted = {*train_names, *test_names, meta_name}
    members = read_members(path, wanted.__contains__)
    with _member(path, meta_name):
        class_names = _names(_load_batch(members, meta_name, path), names_key, count)

    def split(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for name in names:
            with _member(path, name):
                batch = _load_batch(members, name, path)
                xs.append(_images(batch))
                ys.append(_labels(batch, label_key, len(xs[-1]), count))
        return np.concatenate(xs), np.concatenate(ys)

    x_train, y_train = split(train_names)
    x_test, y_test = split(test_names)
    options = f"label_mode={label_mode!r}" if kind == "cifar100" else ""
    return make_dataset(
        x_train,
        y_train,
        x_test,
        y_test,
        name=kind,
        class_names=class_names,
        pixel_max=255.0,
        source=f"{path.resolve()} (official archive {url})",
        checksum=verified,
        split="official train/test batches, in file order",
        provenance=(f"load_{kind}({options})",),
        reference=_REFERENCE,
    )


def _load(
    kind: str,
    filename: str,
    url: str,
    *,
    data_dir: str | os.PathLike[str] | None,
    cache_dir: str | os.PathLike[str] | None,
    download: bool,
    checksum: str | None,
    label_mode: str,
    use_cache: bool,
    quiet: bool,
) -> Dataset:
    path = ensure_file(
        resolve_data_dir(data_dir),
        filename,
        url=url,
        checksum=checksum,
        download=download,
        quiet=quiet,
    )
    key = {"source": source_identity(path), "checksum": checksum, "label_mode": label_mode}
    return cached_dataset(
        kind,
        key,
        lambda: _build(kind, path, checksum, label_mode, url),
        cache_dir=cache_dir,
        use_cache=use_cache,
    )


def load_cifar10(
    *,
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    checksum: str | None = CIFAR10_MD5,
    use_cache: bool = True,
    quiet: bool = False,
) -> Dataset:
    """CIFAR-10: 50,000 / 10,000 RGB 32x32 images in 10 classes, from the official archive.

    Reads ``cifar-10-python.tar.gz`` from ``data_dir`` (default ``$SDCOMPLEX_DATA`` or
    ``~/.cache/sdcomplex/data``). If it is missing and ``download`` is True it is fetched from
    the official URL (:data:`CIFAR10_URL`). Its md5 is verified before anything is parsed;
    decoded arrays are cached (see :func:`~sdcomplex.data._cache.cached_dataset`).

    Args:
        data_dir: directory holding the archive.
        cache_dir: cache root (default ``$SDCOMPLEX_CACHE`` or ``~/.cache/sdcomplex``).
        download: fetch the archive when it is missing.
        checksum: expected ``"md5:<hex>"`` / ``"sha256:<hex>"``; ``None`` skips verification.
        use_cache: read and write the decoded-array cache.
        quiet: no progress bar while downloading.

    Returns:
        :class:`Dataset` with ``x`` uint8 ``(n, 32, 32, 3)``, labels in the official order
        (airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck).

    Example:
        >>> ds = load_cifar10(data_dir="~/data")  # doctest: +SKIP
    """
    return _load(
        "cifar10",
        "cifar-10-python.tar.gz",
        CIFAR10_URL,
        data_dir=data_dir,
        cache_dir=cache_dir,
        download=download,
        checksum=checksum,
        label_mode="fine",
        use_cache=use_cache,
        quiet=quiet,
    )


def load_cifar100(
    *,
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    checksum: str | None = CIFAR100_MD5,
    label_mode: str = "fine",
    use_cache: bool = True,
    quiet: bool = False,
) -> Dataset:
    """CIFAR-100: 50,000 / 10,000 RGB 32x32 images, 100 fine or 20 coarse classes.

    Same conventions as :func:`load_cifar10`, reading ``cifar-100-python.tar.gz``.

    Args:
        label_mode: ``"fine"`` (100 classes, default) or ``"coarse"`` (20 superclasses).
        data_dir, cache_dir, download, checksum, use_cache, quiet: as in :func:`load_cifar10`.

    Returns:
        :class:`Dataset` with class names from the archive's ``meta`` member.

    Example:
        >>> ds = load_cifar100(data_dir="~/data", label_mode="coarse")  # doctest: +SKIP
    """
    if label_mode not in ("fine", "coarse"):
        raise ValueError(f"label_mode must be 'fine' or 'coarse', got {label_mode!r}")
    return _load(
        "cifar100",
        "cifar-100-python.tar.gz",
        CIFAR100_URL,
        data_dir=data_dir,
        cache_dir=cache_dir,
        download=download,
        checksum=checksum,
        label_mode=label_mode,
        use_cache=use_cache,
        quiet=quiet,
    )
