"""Tiny ImageNet (200 classes, 64x64 RGB) from the official ``tiny-imagenet-200`` layout.

Layout (directory ``tiny-imagenet-200/`` or the official ``tiny-imagenet-200.zip``)::

    wnids.txt                              200 WordNet ids, one a line
    train/<wnid>/images/<wnid>_<k>.JPEG    500 per class
    val/images/val_<k>.JPEG                50 per class
    val/val_annotations.txt                "<file>\\t<wnid>\\t<bounding box>" per line
    test/images/...                        no labels: not used

The official test split has no labels, so the labelled validation split is the test split here.
Class order is pinned to the sorted wnids (label k is ``sorted(wnids)[k]``, as in torchvision's
ImageFolder over ``train/``), not the order of ``wnids.txt``. Within each split images are
ordered by (label, file name). Grayscale images are converted to RGB; hidden files (names
starting with ".") are ignored; every validation image the annotations list must be present.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._archives import ensure_file, iter_members, read_members, resolve_data_dir, verify_checksum
from ._cache import cached_dataset, source_identity
from ._dataset import Dataset, make_dataset
from ._decode import DECODER_VERSION, decode_images
from ._image_folder import split_by_label

TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_IMAGENET_MD5 = "md5:90528d7ca1a48142e341f4ef8d21d0de"
_BASE = "tiny-imagenet-200"
_REFERENCE = "Le & Yang (2015), Tiny ImageNet Visual Recognition Challenge (Stanford CS231N)"


def _text(texts: dict[str, bytes], name: str, path: Path) -> str:
    try:
        return texts[name].decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path}: {name} is not UTF-8 text ({err.reason} at byte {err.start})"
        ) from None


def _build(path: Path, checksum: str | None, num_workers: int | None, quiet: bool) -> Dataset:
    verified = verify_checksum(path, checksum)
    texts = read_members(path, lambda n: n.endswith(("wnids.txt", "val/val_annotations.txt")))
    roots = [p for p in ("", f"{_BASE}/") if f"{p}wnids.txt" in texts]
    if not roots:
        raise ValueError(f"{path} has no wnids.txt at its top or under {_BASE}/: not Tiny ImageNet")
    root = roots[0]
    wnids_name, ann_name = f"{root}wnids.txt", f"{root}val/val_annotations.txt"
    if ann_name not in texts:
        raise ValueError(f"{path} has no {ann_name}: incomplete Tiny ImageNet")
    wnids = sorted(set(_text(texts, wnids_name, path).split()))
    label_of = {w: i for i, w in enumerate(wnids)}
    val_label: dict[str, int] = {}
    for line_no, line in enumerate(_text(texts, ann_name, path).splitlines(), 1):
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in label_of:
            raise ValueError(
                f"{path}: {ann_name} line {line_no}: unknown or missing wnid in {line!r:.80}"
            )
        val_label[f"{root}val/images/{fields[0]}"] = label_of[fields[1]]

    labels: dict[str, tuple[str, int]] = {}  # member -> (split, label)

    def select(name: str) -> bool:
        if not name.startswith(root) or not name.lower().endswith((".jpeg", ".jpg")):
            return False
        parts = name[len(root) :].split("/")
        if any(part.startswith(".") for part in parts):  # ._x.JPEG, .DS_Store, ...
            return False
        if len(parts) == 4 and parts[0] == "train" and parts[2] == "images":
            if parts[1] not in label_of:
                raise ValueError(f"{path}: training folder {parts[1]!r} is not in wnids.txt")
            labels[name] = ("train", label_of[parts[1]])
        elif len(parts) == 3 and parts[:2] == ["val", "images"]:
            if name not in val_label:
                raise ValueError(f"{path}: {name} has no entry in {ann_name}")
            labels[name] = ("val", val_label[name])
        return name in labels

    names, images = decode_images(
        iter_members(path, select),
        num_workers=num_workers,
        quiet=quiet,
        desc="Tiny ImageNet",
    )
    if not names:
        raise ValueError(f"{path} has no images in {root}train/<wnid>/images/ or {root}val/images/")
    x_train, y_train = split_by_label(names, images, labels, "train")
    x_test, y_test = split_by_label(names, images, labels, "val")
    if not len(x_test):
        raise ValueError(f"{path} has no validation images in {root}val/images/")
    absent = sorted(set(val_label) - set(names))
    if absent:
        raise ValueError(
            f"{path}: {len(absent)} image(s) listed in {ann_name} are missing, e.g. {absent[0]}"
        )
    missing = set(range(len(wnids))) - set(y_train.tolist())
    if missing:
        raise ValueError(f"{path}: no training images for {[wnids[k] for k in sorted(missing)]}")
    return make_dataset(
        x_train,
        y_train,
        x_test,
        y_test,
        name="tiny_imagenet",
        class_names=tuple(wnids),
        pixel_max=255.0,
        source=f"{path.resolve()} (official {TINY_IMAGENET_URL})",
        checksum=verified,
        split="official train / official val (labelled) used as test; sorted by (label, file)",
        provenance=("load_tiny_imagenet()",),
        reference=_REFERENCE,
    )


def load_tiny_imagenet(
    *,
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    path: str | os.PathLike[str] | None = None,
    checksum: str | None = TINY_IMAGENET_MD5,
    num_workers: int | None = None,
    quiet: bool = False,
    use_cache: bool = True,
) -> Dataset:
    """Tiny ImageNet: 100,000 train / 10,000 test (official val) RGB 64x64 images, 200 classes.

    Looks for ``path`` if given, else ``data_dir/tiny-imagenet-200/`` (an extracted copy),
    else ``data_dir/tiny-imagenet-200.zip`` (downloaded from the official URL when missing
    and ``download`` is True); ``data_dir`` defaults to ``$SDCOMPLEX_DATA`` or
    ``~/.cache/sdcomplex/data``. The zip's md5 is verified before it is read (a directory
    cannot be verified). Decoded arrays are cached.

    Args:
        data_dir: directory holding the zip or the extracted folder.
        cache_dir: cache root (default ``$SDCOMPLEX_CACHE`` or ``~/.cache/sdcomplex``).
        download: fetch the official zip when nothing is found.
        path: explicit zip or directory (wins over ``data_dir``).
        checksum: expected digest of the zip; ``None`` skips verification; ignored for a
            directory.
        num_workers: decoding processes (default: the idle cores; 1 decodes here).
        quiet: hide progress bars.
        use_cache: read and write the decoded-array cache.

    Returns:
        :class:`Dataset` named ``"tiny_imagenet"``, class names the sorted wnids.

    Example:
        >>> ds = load_tiny_imagenet(data_dir="~/data")  # doctest: +SKIP
    """
    if path is not None:
        source = Path(path).expanduser()
        if not source.exists():
            raise ValueError(f"Tiny ImageNet path {source} does not exist")
    else:
        folder = resolve_data_dir(data_dir)
        source = folder / _BASE
        if not source.is_dir():
            source = ensure_file(
                folder,
                f"{_BASE}.zip",
                url=TINY_IMAGENET_URL,
                checksum=checksum,
                download=download,
                quiet=quiet,
            )
    if source.is_dir():
        checksum = None
    return cached_dataset(
        "tiny_imagenet",
        {"source": source_identity(source), "checksum": checksum, "decoder": DECODER_VERSION},
        lambda: _build(source, checksum, num_workers, quiet),
        cache_dir=cache_dir,
        use_cache=use_cache,
    )
