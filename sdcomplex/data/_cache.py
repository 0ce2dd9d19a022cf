"""On-disk cache of decoded data sets (``.npz`` files written atomically, outside the repo).

The cache root is, in order of precedence: the ``cache_dir`` argument, the ``SDCOMPLEX_CACHE``
environment variable, ``~/.cache/sdcomplex``. A cache file is named after the data set and a key
that hashes everything the arrays depend on: the source's identity (resolved path, size and
modification time of the file, or of every file of a directory), the loader options, the
expected checksum, the image decoder's version and the cache format version. Changing any of
them misses the cache; an unreadable cache file is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sdcomplex._io import atomic_write, load_arrays

from ._archives import walk_files
from ._dataset import Dataset, DatasetInfo

CACHE_ENV = "SDCOMPLEX_CACHE"
"""Environment variable that overrides the default cache root."""

DEFAULT_CACHE_DIR = Path("~/.cache/sdcomplex")
"""Cache root used when neither ``cache_dir`` nor ``$SDCOMPLEX_CACHE`` is given."""

_FORMAT_VERSION = 1
_ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the cache root: argument, else ``$SDCOMPLEX_CACHE``, else ``~/.cache/sdcomplex``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else DEFAULT_CACHE_DIR.expanduser()


def source_identity(path: Path) -> dict[str, Any]:
    """What identifies a source cheaply: resolved path, size and mtime (of each file in a dir)."""
    resolved = path.resolve()
    if resolved.is_file():
        st = resolved.stat()
        return {"path": str(resolved), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    digest = hashlib.sha256()
    count = 0
    for rel, full in walk_files(resolved):
        st = full.stat()
        entry = f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n"
        digest.update(entry.encode("utf-8", "surrogateescape"))  # names need not be UTF-8
        count += 1
    return {"path": str(resolved), "files": count, "tree": digest.hexdigest()}


def check_cache_name(name: object) -> str:
    """``name`` if it can prefix a cache file name: letters, digits, ``_ . + -``, not starting
    with ``.`` (so never a path: no separator, no ``..``, no hidden file).

    Raises:
        ValueError: any other name (naming it).

    Example:
        >>> check_cache_name("cifar10_jpeg")
        'cifar10_jpeg'
    """
    if (
        not isinstance(name, str)
        or not name
        or name.startswith(".")
        or not all(c.isalnum() or c in "_.+-" for c in name)
    ):
        raise ValueError(
            f"data set name {name!r} cannot name a cache file: use letters, digits and _ . + - "
            "(not starting with .)"
        )
    return name


def cache_key(**parts: Any) -> str:
    """Short stable hash of JSON-serialisable ``parts`` (plus the cache format version)."""
    text = json.dumps({"format": _FORMAT_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def save_dataset(path: Path, dataset: Dataset) -> None:
    """Write a data set to an uncompressed ``.npz`` atomically (no pickled objects)."""
    arrays = {name: getattr(dataset, name) for name in _ARRAYS}
    info = np.array(dataset.info.to_json())
    atomic_write(path, lambda fh: np.savez(fh, info_json=info, **arrays), overwrite=True)


def read_dataset(path: Path) -> Dataset:
    """Read a data set written by :func:`save_dataset` (through :func:`sdcomplex._io.load_arrays`:
    no pickled objects, sizes checked before anything is allocated).

    Raises:
        ValueError: a malformed file, or one missing an array (naming it).
    """
    arrays = load_arrays(path)
    missing = [name for name in ("info_json", *_ARRAYS) if name not in arrays]
    if missing:
        raise ValueError(f"{path}: no array {missing[0]!r}")
    info = DatasetInfo.from_json(str(arrays["info_json"]))
    x_train, y_train, x_test, y_test = (arrays[name] for name in _ARRAYS)
    return Dataset(x_train, y_train, x_test, y_test, info)


def cached_dataset(
    name: str,
    key_parts: dict[str, Any],
    build: Callable[[], Dataset],
    *,
    cache_dir: str | os.PathLike[str] | None,
    use_cache: bool = True,
) -> Dataset:
    """Return the cached data set for ``key_parts``, or build it and cache it.

    Args:
        name: data set name, the prefix of the cache file (:func:`check_cache_name`).
        key_parts: everything the arrays depend on (see :func:`cache_key`).
        build: makes the data set on a cache miss; if it raises, nothing is written.
        cache_dir: cache root (see :func:`cache_root`).
        use_cache: ``False`` always builds and neither reads nor writes the cache.

    A cache file that cannot be read is rebuilt, one that cannot be written is skipped, each
    with a warning.

    Returns:
        The data set.

    Raises:
        ValueError: a ``name`` that is not a plain file name (:func:`check_cache_name`).
    """
    check_cache_name(name)
    if not use_cache:
        return build()
    path = cache_root(cache_dir) / f"{name}-{cache_key(name=name, **key_parts)}.npz"
    if path.is_file():
        try:
            return read_dataset(path)
        except Exception as err:  # a damaged cache file of any kind is rebuilt
            warnings.warn(
                f"ignoring unreadable cache file {path} ({err}); rebuilding", stacklevel=2
            )
    dataset = build()
    try:
        save_dataset(path, dataset)
    except OSError as err:  # read-only or misplaced cache: the next load only decodes again
        message = f"cannot write cache file {path} ({err}); continuing without it"
        warnings.warn(message, stacklevel=2)
    return dataset
